//! `[admin]`: the admin HTTP endpoint (metrics, health) and `[admin.ui]`, the Socket.IO
//! Admin UI's server on the same port.

use std::{net::SocketAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

use super::{ConfigError, ServerTlsConfig};

/// The admin HTTP endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of `/metrics` (Prometheus, OpenMetrics text), `/livez` and `/readyz` (503
    /// while starting or draining), and of the Admin UI's server when enabled.
    pub listen: SocketAddr,
    /// TLS of the admin endpoint.
    pub tls: ServerTlsConfig,
    /// The server of the official Socket.IO Admin UI (`@socket.io/admin-ui`).
    pub ui: AdminUiConfig,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            tls: ServerTlsConfig::default(),
            ui: AdminUiConfig::default(),
        }
    }
}

/// The Socket.IO Admin UI's server: Socket.IO path `/socket.io`, namespace `/admin` on the
/// admin port. It shows every node of the cluster as a server with its counts, the first
/// `max_sockets` sockets (user id, state, rooms, connection details; internal `$sg:` rooms
/// hidden) refreshed every 2 s, and the rooms; the UI's live event stream is not offered.
/// Its actions (join, leave, disconnect, emit) go through the `SocketControl` methods with
/// their rules, and are logged with the operator's name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminUiConfig {
    /// Serve the Admin UI's protocol.
    pub enabled: bool,
    /// The operator's name, which the UI's login form asks for.
    pub username: String,
    /// bcrypt hash of the operator's password (as socket.io's `instrument()` takes, e.g.
    /// `htpasswd -bnBC 10 "" secret | tr -d ':\n'`). Empty: no login, and then
    /// `admin.listen` must be a loopback address.
    pub password_hash: String,
    /// Advertise and perform no action: the UI only looks.
    pub readonly: bool,
    /// Origins of the pages allowed to connect (with credentials, as the UI connects with
    /// `withCredentials`), e.g. `["https://admin.socket.io"]`. Pages served by this port
    /// (`static_dir`) are always allowed; requests without an `Origin` (not a browser) too.
    pub origins: Vec<String>,
    /// A directory with the UI's own files (the npm package's `ui/dist`), served at `/ui/`
    /// on the admin port. Unset: not served.
    pub static_dir: Option<PathBuf>,
    /// A `node_modules` directory holding the npm packages `@fontsource/roboto` and
    /// `@mdi/font`: the UI served from `static_dir` then links its text and icon fonts from
    /// them on this port instead of Google Fonts and jsDelivr, so that no external site is
    /// needed (its `index.html` is rewritten as it is served). Unset: the UI links them from
    /// those sites, and without internet access its icons are blank.
    pub fonts_dir: Option<PathBuf>,
    /// Most sockets listed to the UI (the first by id, cluster-wide); `1` to `1000`.
    pub max_sockets: u32,
}

impl Default for AdminUiConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            username: "admin".into(),
            password_hash: String::new(),
            readonly: false,
            origins: Vec::new(),
            static_dir: None,
            fonts_dir: None,
            max_sockets: 200,
        }
    }
}

impl AdminConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.tls.validate("admin.tls")?;
        self.validate_ui()
    }

    fn validate_ui(&self) -> Result<(), ConfigError> {
        let ui = &self.ui;
        if !ui.enabled {
            return Ok(());
        }
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if ui.password_hash.is_empty() && !self.listen.ip().is_loopback() {
            return invalid(format!(
                "admin.ui without a password_hash may only listen on loopback, not {}; \
                 set admin.ui.password_hash (a bcrypt hash)",
                self.listen
            ));
        }
        if !ui.password_hash.is_empty() && ui.password_hash.parse::<bcrypt::HashParts>().is_err() {
            return invalid("admin.ui.password_hash is not a bcrypt hash ($2b$...)".into());
        }
        if !(1..=1000).contains(&ui.max_sockets) {
            return invalid(format!(
                "admin.ui.max_sockets must be 1 to 1000, got {}",
                ui.max_sockets
            ));
        }
        if let Some(dir) = &ui.static_dir
            && !dir.join("index.html").is_file()
        {
            return invalid(format!(
                "admin.ui.static_dir {} has no index.html (the npm package's ui/dist)",
                dir.display()
            ));
        }
        if let Some(dir) = &ui.fonts_dir {
            if ui.static_dir.is_none() {
                return invalid("admin.ui.fonts_dir is set without admin.ui.static_dir".into());
            }
            for (_, package, file) in crate::admin::ui::FONT_PACKAGES {
                if !dir.join(package).join(file).is_file() {
                    return invalid(format!(
                        "admin.ui.fonts_dir {} has no {package}/{file} (`npm install {package}`)",
                        dir.display()
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn check(edit: impl FnOnce(&mut AdminConfig)) -> Option<String> {
        let mut config = Config::default();
        config.admin.ui.enabled = true;
        edit(&mut config.admin);
        config.validate().err().map(|e| e.to_string())
    }

    #[test]
    fn without_a_password_the_ui_stays_on_loopback() {
        assert_eq!(check(|_| {}), None);
        let open = check(|a| a.listen = SocketAddr::from(([0, 0, 0, 0], 9464))).unwrap();
        assert!(open.contains("may only listen on loopback"), "{open}");
        let hash = bcrypt::hash("secret", 4).unwrap();
        assert_eq!(
            check(|a| {
                a.listen = SocketAddr::from(([0, 0, 0, 0], 9464));
                a.ui.password_hash = hash;
            }),
            None
        );
    }

    #[test]
    fn the_hash_the_cap_and_the_static_dir_are_checked() {
        let hash = check(|a| a.ui.password_hash = "secret".into()).unwrap();
        assert!(hash.contains("not a bcrypt hash"), "{hash}");
        let cap = check(|a| a.ui.max_sockets = 1001).unwrap();
        assert!(cap.contains("admin.ui.max_sockets"), "{cap}");
        let dir = check(|a| a.ui.static_dir = Some("/nonexistent".into())).unwrap();
        assert!(dir.contains("no index.html"), "{dir}");
    }

    #[test]
    fn the_fonts_dir_needs_the_static_dir_and_both_font_packages() {
        let alone = check(|a| a.ui.fonts_dir = Some("/nonexistent".into())).unwrap();
        assert!(alone.contains("without admin.ui.static_dir"), "{alone}");
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("index.html"), "").unwrap();
        let mdi = root.path().join("@mdi/font/css");
        std::fs::create_dir_all(&mdi).unwrap();
        std::fs::write(mdi.join("materialdesignicons.min.css"), "").unwrap();
        let with = |a: &mut AdminConfig| {
            a.ui.static_dir = Some(root.path().into());
            a.ui.fonts_dir = Some(root.path().into());
        };
        let missing = check(with).unwrap();
        assert!(
            missing.contains("no @fontsource/roboto/400.css"),
            "{missing}"
        );
        std::fs::create_dir_all(root.path().join("@fontsource/roboto")).unwrap();
        std::fs::write(root.path().join("@fontsource/roboto/400.css"), "").unwrap();
        assert_eq!(check(with), None);
    }
}
