//! Loads the [`RuleSet`] from the database and settings, and keeps a
//! snapshot in memory so a webhook decides without touching SQLite.
//!
//! [`RulesCache::run`] reloads when the rules change (`rules_version`, a
//! counter that triggers on blocklist, routes, caller_lists, dids and
//! users.dnd bump; polled every 250 ms) and when settings change. The "test
//! a call" panel loads fresh instead.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use proto::settings::{Settings, SettingsHandle};
use proto::types::{DidId, RouteId, UserId};
use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

use crate::rules::{BlockAction, BlockEntry, Blocklist, Calendar, DidRules, Route, RuleSet};

/// What the voice handlers need to know about a DID beside its rules.
#[derive(Debug, Clone)]
pub struct DidInfo {
    pub id: DidId,
    pub owner_user_id: Option<UserId>,
    pub greeting_text: String,
    pub greeting_path: String,
}

/// Rules plus DID details, one consistent snapshot.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub rules: RuleSet,
    pub dids: HashMap<String, DidInfo>,
    /// Add-on unique name -> vendor (`routing.spam_addons`).
    pub addons: HashMap<String, crate::rules::Vendor>,
}

/// Reads everything [`crate::rules::decide`] needs.
pub async fn load(pool: &SqlitePool, s: &Settings) -> Result<Snapshot, sqlx::Error> {
    let country = default_country(s);
    let blocklist = load_blocklist(pool, &country).await?;
    let lists = load_caller_lists(pool, &country).await?;
    let routes = load_routes(pool, &country).await?;
    let global: Vec<Route> = routes
        .iter()
        .filter(|r| r.did_id.is_none())
        .cloned()
        .collect();
    let did_tables = load_dids(pool, &routes).await?;
    let rules = RuleSet {
        blocklist,
        reject_anonymous: s.bool("routing.reject_anonymous"),
        spam_threshold: s
            .str("routing.spam_threshold")
            .trim()
            .parse()
            .unwrap_or(0.7),
        block_action: Some(BlockAction::parse(s.str("routing.block_action"))),
        system_dnd: s.bool("routing.dnd"),
        vip: lists.vip,
        known: lists.known,
        calendar: Calendar::from_settings(s),
        dids: did_tables.rules,
        global_routes: global,
        default_country: country,
    };
    Ok(Snapshot {
        rules,
        dids: did_tables.infos,
        addons: crate::rules::parse_addon_names(s.str("routing.spam_addons")),
    })
}

/// The country code numbers are normalised with; "1" when the setting is
/// blank, so an unconfigured system still compares numbers consistently.
fn default_country(s: &Settings) -> String {
    let country = s.str("system.default_country").trim().to_owned();
    if country.is_empty() {
        "1".to_owned()
    } else {
        country
    }
}

/// Reads the blocklist; entries with a bad pattern are logged and skipped
/// so one broken row cannot stop every call from being decided.
async fn load_blocklist(pool: &SqlitePool, country: &str) -> Result<Blocklist, sqlx::Error> {
    let entries: Vec<(i64, String, String, String)> =
        sqlx::query_as("SELECT id, pattern, pattern_type, reason FROM blocklist ORDER BY id")
            .fetch_all(pool)
            .await?;
    let (blocklist, bad) = Blocklist::new(
        entries
            .into_iter()
            .map(|(id, pattern, pattern_type, reason)| BlockEntry {
                id,
                pattern,
                pattern_type,
                reason,
            })
            .collect(),
        country,
    );
    if !bad.is_empty() {
        tracing::warn!(ids = ?bad, "blocklist entries with an invalid pattern are ignored");
    }
    Ok(blocklist)
}

/// The normalised numbers of the caller lists.
struct CallerLists {
    vip: HashSet<String>,
    known: HashSet<String>,
}

/// Reads the VIP and known caller lists, normalised the way callers are,
/// so membership is a plain set lookup at decision time.
async fn load_caller_lists(pool: &SqlitePool, country: &str) -> Result<CallerLists, sqlx::Error> {
    let lists: Vec<(String, String)> = sqlx::query_as("SELECT list, number FROM caller_lists")
        .fetch_all(pool)
        .await?;
    let mut vip = HashSet::new();
    let mut known = HashSet::new();
    for (list, number) in lists {
        let n = crate::rules::normalize_caller(&number, country);
        if list == "vip" {
            vip.insert(n);
        } else {
            known.insert(n);
        }
    }
    Ok(CallerLists { vip, known })
}

/// Reads the enabled routes in priority order, logging the invalid ones
/// (they are kept but never match).
async fn load_routes(pool: &SqlitePool, country: &str) -> Result<Vec<Route>, sqlx::Error> {
    type RouteRow = (
        RouteId,
        Option<DidId>,
        i64,
        String,
        String,
        String,
        String,
        String,
    );
    let rows: Vec<RouteRow> = sqlx::query_as(
        "SELECT id, did_id, priority, name, condition_type, condition_data, action_type, action_data \
         FROM routes WHERE enabled ORDER BY priority, id",
    )
    .fetch_all(pool)
    .await?;
    let routes: Vec<Route> = rows
        .into_iter()
        .map(|(id, did, prio, name, ct, cd, at, ad)| {
            Route::from_row(id, did, prio, &name, &ct, &cd, &at, &ad, country)
        })
        .collect();
    for r in &routes {
        if let crate::rules::Condition::Invalid(why) = &r.condition {
            // Only rows written around the API get here; they never match.
            tracing::warn!(route_id = %r.id, name = %r.name, reason = %why, "route is invalid and ignored");
        }
    }
    Ok(routes)
}

/// Per-DID rules and details, both keyed by the DID's number.
struct DidTables {
    rules: HashMap<String, DidRules>,
    infos: HashMap<String, DidInfo>,
}

/// Reads the DIDs with their owner's DND flag and gives each its own
/// routes merged with the global ones, so a call needs one lookup.
async fn load_dids(pool: &SqlitePool, routes: &[Route]) -> Result<DidTables, sqlx::Error> {
    type DidRow = (DidId, String, Option<UserId>, Option<bool>, String, String);
    let did_rows: Vec<DidRow> = sqlx::query_as(
        "SELECT d.id, d.number, d.owner_user_id, u.dnd, d.greeting_text, d.greeting_path \
         FROM dids d LEFT JOIN users u ON u.id = d.owner_user_id",
    )
    .fetch_all(pool)
    .await?;
    let mut dids = HashMap::new();
    let mut infos = HashMap::new();
    for (id, number, owner, dnd, greeting_text, greeting_path) in did_rows {
        // This DID's routes and the global ones, in priority order.
        let mut rs: Vec<Route> = routes
            .iter()
            .filter(|r| r.did_id.is_none() || r.did_id == Some(id))
            .cloned()
            .collect();
        rs.sort_by_key(|r| (r.priority, r.id));
        dids.insert(
            number.clone(),
            DidRules {
                did_id: id,
                owner_user_id: owner,
                owner_dnd: dnd.unwrap_or(false),
                routes: rs,
            },
        );
        infos.insert(
            number,
            DidInfo {
                id,
                owner_user_id: owner,
                greeting_text,
                greeting_path,
            },
        );
    }
    Ok(DidTables { rules: dids, infos })
}

/// The in-memory snapshot, shared by all handlers.
#[derive(Clone)]
pub struct RulesCache {
    pool: SqlitePool,
    settings: SettingsHandle,
    current: Arc<RwLock<Arc<Snapshot>>>,
    /// The `rules_version` the current snapshot was loaded at (-1 before
    /// the first reading).
    loaded_at: Arc<std::sync::atomic::AtomicI64>,
}

impl RulesCache {
    /// Loads the first snapshot.
    pub async fn new(pool: SqlitePool, settings: SettingsHandle) -> Result<Self, sqlx::Error> {
        let first = load(&pool, &settings.get()).await?;
        Ok(Self {
            pool,
            settings,
            current: Arc::new(RwLock::new(Arc::new(first))),
            loaded_at: Arc::new(std::sync::atomic::AtomicI64::new(-1)),
        })
    }

    /// The snapshot for a call being decided now: when the rules changed
    /// since it was loaded (one small read), it is reloaded first, so a
    /// rule saved a moment ago already decides the next call.
    pub async fn fresh(&self) -> Arc<Snapshot> {
        use std::sync::atomic::Ordering;
        if let Some(v) = self.version().await
            && v != self.loaded_at.load(Ordering::Acquire)
        {
            match self.refresh().await {
                Ok(()) => self.loaded_at.store(v, Ordering::Release),
                Err(e) => {
                    tracing::warn!(error = %e, "rules reload failed; deciding with the last rules")
                }
            }
        }
        self.get()
    }

    /// The current snapshot.
    pub fn get(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Reloads now.
    pub async fn refresh(&self) -> Result<(), sqlx::Error> {
        let fresh = Arc::new(load(&self.pool, &self.settings.get()).await?);
        match self.current.write() {
            Ok(mut g) => *g = fresh,
            Err(p) => *p.into_inner() = fresh,
        }
        Ok(())
    }

    /// Reloads on rule edits (`rules_version`) and on settings changes.
    pub async fn run(self, stop: CancellationToken) {
        let mut settings = self.settings.subscribe();
        // Baseline first, then reload: edits made since `new` are not missed.
        let mut last = self.version().await;
        self.reload_logged().await;
        if let Some(v) = last {
            self.loaded_at
                .store(v, std::sync::atomic::Ordering::Release);
        }
        loop {
            let changed = tokio::select! {
                _ = stop.cancelled() => return,
                r = settings.changed() => r.is_ok(),
                _ = tokio::time::sleep(Duration::from_millis(250)) => {
                    let v = self.version().await;
                    let changed = v.is_some() && v != last;
                    if v.is_some() { last = v; }
                    changed
                }
            };
            if changed {
                self.reload_logged().await;
                if let Some(v) = last {
                    self.loaded_at
                        .store(v, std::sync::atomic::Ordering::Release);
                }
            }
        }
    }

    async fn version(&self) -> Option<i64> {
        sqlx::query_scalar("SELECT version FROM rules_version WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .ok()
            .flatten()
    }

    async fn reload_logged(&self) {
        match self.refresh().await {
            Ok(()) => {
                let snap = self.get();
                tracing::debug!(
                    blocklist = snap.rules.blocklist.len(),
                    dids = snap.dids.len(),
                    "rules reloaded"
                );
            }
            Err(e) => tracing::warn!(error = %e, "rules reload failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_cache_sees_rule_edits_made_by_another_connection() {
        let dir = tempfile::tempdir().unwrap();
        let pool = proto::db::open(dir.path()).await.unwrap();
        let settings = SettingsHandle::new(pool.clone()).await.unwrap();
        let cache = RulesCache::new(pool.clone(), settings).await.unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(cache.clone().run(stop.clone()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(cache.get().rules.blocklist.len(), 0);
        sqlx::query("INSERT INTO blocklist (pattern, pattern_type) VALUES ('+1900', 'prefix')")
            .execute(&pool)
            .await
            .unwrap();
        let mut seen = false;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if cache.get().rules.blocklist.len() == 1 {
                seen = true;
                break;
            }
        }
        stop.cancel();
        assert!(seen, "blocklist edit not picked up");
    }

    #[tokio::test]
    async fn a_call_decided_right_after_an_edit_sees_it_without_waiting_for_the_poll() {
        let dir = tempfile::tempdir().unwrap();
        let pool = proto::db::open(dir.path()).await.unwrap();
        let settings = SettingsHandle::new(pool.clone()).await.unwrap();
        // No run loop at all: only `fresh` can see the edit.
        let cache = RulesCache::new(pool.clone(), settings).await.unwrap();
        assert_eq!(cache.fresh().await.rules.blocklist.len(), 0);
        sqlx::query("INSERT INTO blocklist (pattern, pattern_type) VALUES ('+1900', 'prefix')")
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(cache.get().rules.blocklist.len(), 0, "the cached snapshot");
        assert_eq!(cache.fresh().await.rules.blocklist.len(), 1);
    }
}
