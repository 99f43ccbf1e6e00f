//! Which crate writes which table of the shared database.
//!
//! Every daemon opens the same SQLite file, so nothing in SQLite stops one
//! from writing another's table; this list says who does. The test
//! `proto/tests/table_owners.rs` reads the SQL in each crate's non-test code
//! and fails on a write the list does not name, on a listed writer that no
//! longer writes the table, and on a table of the migrations missing here.
//! docs/ARCHITECTURE.md draws the same map.

/// Every table of the migrations and the crates that write it at run time.
/// Most have exactly one writer. Tables only triggers write have none.
pub const TABLE_WRITERS: &[(&str, &[&str])] = &[
    // Every daemon raises alerts through `proto::db::alert` (mediad through
    // `proto::alerts::Alerter`); webd marks them acknowledged.
    ("alerts", &["sipd", "mediad", "twiliod", "notifyd", "webd"]),
    ("api_keys", &["webd"]),
    ("auto_replies", &["webd"]),
    ("blocklist", &["webd"]),
    ("caller_lists", &["webd"]),
    // sipd writes the calls it bridges (and clears links to recordings
    // mediad's retention deleted); twiliod tells it, over gRPC
    // (`RecordCall`), of the inbound calls that never reach sipd and of
    // Twilio's final status.
    ("cdrs", &["sipd"]),
    ("config", &["webd"]),
    ("deliveries", &["notifyd"]),
    ("devices", &["webd"]),
    ("dids", &["webd"]),
    // One table for every durable queue (`jobs.queue` names the daemon),
    // written through `proto::jobs`; webd's restore abandons the jobs a
    // backup still held.
    ("jobs", &["sipd", "twiliod", "notifyd", "webd"]),
    ("login_attempts", &["webd"]),
    // twiliod stores texts and their delivery status; webd marks them read.
    ("messages", &["twiliod"]),
    ("provisioning", &["webd"]),
    // sipd's registrar (it drops a device's registrations when its
    // credentials change or it is gone).
    ("registrations", &["sipd"]),
    ("routes", &["webd"]),
    ("rules_version", &[]),
    // sipd, twiliod and webd record events through `proto::db::security_event`;
    // webd prunes the log.
    ("security_events", &["sipd", "twiliod", "webd"]),
    ("sessions", &["webd"]),
    ("sip_addresses", &["sipd"]),
    ("sms_auto_reply_log", &["twiliod"]),
    // twiliod hands out media tokens (a restore copies none).
    ("sms_media_tokens", &["twiliod"]),
    ("sms_opt_outs", &["twiliod"]),
    ("users", &["webd"]),
    ("voice_calls", &["twiliod"]),
    ("voice_recordings", &["twiliod"]),
    // twiliod stores voicemails; webd marks them heard and deletes them.
    ("voicemails", &["twiliod"]),
    ("webd_list_versions", &[]),
    ("webhook_endpoints", &["webd"]),
];

/// Functions of this crate that write a table for the daemon calling them
/// (path under `proto::`, table): a crate that names one writes that table.
pub const WRITE_HELPERS: &[(&str, &str)] = &[
    ("db::alert", "alerts"),
    ("db::alert_at", "alerts"),
    ("alerts::Alerter", "alerts"),
    ("db::security_event", "security_events"),
    ("settings::store", "config"),
    ("jobs::insert", "jobs"),
    ("jobs::claim", "jobs"),
    ("jobs::settle", "jobs"),
    ("jobs::recover", "jobs"),
    ("jobs::prune", "jobs"),
];

/// Stands for every table in [`RUN_TIME_NAMED`].
pub const EVERY_TABLE: &str = "*";

/// Writes whose table name is filled in at run time (`format!("DELETE FROM
/// {table} ...")`), which a reading of the source cannot resolve: (crate,
/// file under the crate, the tables it names). webd's backup restore
/// replaces the rows of every table but the few it skips.
pub const RUN_TIME_NAMED: &[(&str, &str, &[&str])] = &[
    (
        "webd",
        "src/api/lists.rs",
        &["blocklist", "caller_lists", "auto_replies"],
    ),
    ("webd", "src/backup.rs", &[EVERY_TABLE]),
];
