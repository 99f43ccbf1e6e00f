//! webd's API as a browser or a script uses it (JSON bodies, the session
//! cookie, the CSRF header), for every crate whose tests set the system up
//! through the front door.

use std::path::Path;

/// The password of every user the system tests make.
pub const PASSWORD: &str = "correct horse battery";

/// webd's API as a browser or a script uses it: JSON bodies, the session
/// cookie, the CSRF header.
pub struct Api {
    http: reqwest::Client,
    pub base: String,
}

impl Api {
    /// The API of a webd at `base` (`http://127.0.0.1:port`), e.g. one a
    /// test runs in-process.
    pub fn at(base: String) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(20))
                .build()
                .expect("http client"),
            base,
        }
    }

    /// One request as `cookie` (may be empty): (status, JSON body or
    /// null, the session cookie it set or "").
    pub async fn call(
        &self,
        cookie: &str,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value, String) {
        let mut r = self
            .http
            .request(
                method.parse().expect("method"),
                format!("{}{path}", self.base),
            )
            .header("X-Requested-With", "gosip");
        if !cookie.is_empty() {
            r = r.header("Cookie", cookie);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let res = r.send().await.expect("webd answers");
        let status = res.status().as_u16();
        let set = res
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .unwrap_or("")
            .to_owned();
        (status, res.json().await.unwrap_or_default(), set)
    }

    /// A file sent as the UI's file inputs send it: multipart, in the
    /// field `file`; (status, JSON body or null).
    pub async fn upload(
        &self,
        cookie: &str,
        method: &str,
        path: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> (u16, serde_json::Value) {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
        );
        let res = self
            .http
            .request(
                method.parse().expect("method"),
                format!("{}{path}", self.base),
            )
            .header("X-Requested-With", "gosip")
            .header("Cookie", cookie)
            .multipart(form)
            .send()
            .await
            .expect("webd answers");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or_default())
    }

    /// [`Api::call`] that must answer `want`; returns the body.
    pub async fn ok(
        &self,
        cookie: &str,
        want: u16,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let (s, v, _) = self.call(cookie, method, path, body).await;
        assert_eq!(s, want, "{method} {path}: {v}");
        v
    }

    /// Settings saved on the settings screen (`{"key": "value"}`); webd
    /// reloads the daemons.
    pub async fn settings(&self, admin: &str, values: serde_json::Value) {
        self.ok(
            admin,
            200,
            "PUT",
            "/api/system/config",
            Some(serde_json::json!({ "values": values })),
        )
        .await;
    }

    /// A user made on the users screen with [`PASSWORD`]; their id.
    pub async fn new_user(&self, admin: &str, email: &str, role: &str) -> i64 {
        self.ok(
            admin,
            201,
            "POST",
            "/api/users",
            Some(serde_json::json!({"email": email, "role": role, "password": PASSWORD})),
        )
        .await["id"]
            .as_i64()
            .expect("user id")
    }

    /// Logs `email` in with [`PASSWORD`]; the session cookie.
    pub async fn login(&self, email: &str) -> String {
        let (s, v, cookie) = self
            .call(
                "",
                "POST",
                "/api/auth/login",
                Some(serde_json::json!({"email": email, "password": PASSWORD})),
            )
            .await;
        assert_eq!(s, 200, "login {email}: {v}");
        cookie
    }

    /// A user's do-not-disturb switch, as the admin flips it.
    pub async fn set_dnd(&self, admin: &str, user: i64, on: bool) {
        self.ok(
            admin,
            200,
            "PUT",
            &format!("/api/users/{user}"),
            Some(serde_json::json!({ "dnd": on })),
        )
        .await;
    }

    /// The id of our number `number` (E.164) on the numbers screen.
    pub async fn number_id(&self, cookie: &str, number: &str) -> i64 {
        let list = self.ok(cookie, 200, "GET", "/api/dids", None).await;
        list["items"]
            .as_array()
            .and_then(|a| a.iter().find(|d| d["number"] == number))
            .and_then(|d| d["id"].as_i64())
            .unwrap_or_else(|| panic!("{number} is not one of our numbers: {list}"))
    }

    /// Changes our number `number` on the numbers screen (`{"owner_user_id":
    /// 3, "twilio_sid": "PN..."}`); its id.
    pub async fn edit_number(&self, admin: &str, number: &str, changes: serde_json::Value) -> i64 {
        let id = self.number_id(admin, number).await;
        self.ok(admin, 200, "PUT", &format!("/api/dids/{id}"), Some(changes))
            .await;
        id
    }

    /// The first-run wizard through `POST /api/setup` with the setup token
    /// webd wrote to `data_dir`: the admin `admin@example.org` and `did` as
    /// the first number (the admin owns it). Returns the admin's session
    /// cookie.
    pub async fn setup_in(&self, data_dir: &Path, did: &str) -> String {
        self.wizard(
            data_dir,
            serde_json::json!({"did": {"number": did, "name": "Main"}}),
        )
        .await
    }

    /// The first-run wizard with only the admin (no number yet); the
    /// admin's session cookie.
    pub async fn setup_admin_in(&self, data_dir: &Path) -> String {
        self.wizard(data_dir, serde_json::json!({})).await
    }

    async fn wizard(&self, data_dir: &Path, mut body: serde_json::Value) -> String {
        let token = std::fs::read_to_string(data_dir.join("setup-token")).expect("token");
        body["setup_token"] = token.trim().into();
        body["admin"] = serde_json::json!({"email": "admin@example.org", "password": PASSWORD});
        let (s, v, cookie) = self.call("", "POST", "/api/setup", Some(body)).await;
        assert_eq!(s, 200, "setup: {v}");
        cookie
    }
}
