//! The UI's own files at `/ui/` (`admin.ui.static_dir`, the npm package's `ui/dist`) and,
//! with `admin.ui.fonts_dir`, the two stylesheets its `index.html` links from other sites
//! (Roboto from Google Fonts, the Material Design Icons font from jsDelivr) served from the
//! npm packages `@fontsource/roboto` and `@mdi/font` instead: `index.html` is rewritten as
//! it is served to link them, and no file on disk is changed.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
};
use tower_http::services::ServeDir;
use tracing::warn;

use super::AdminUiError;

/// The UI's links to other sites, each with the local links that replace it:
/// `@fontsource/roboto`'s stylesheet of each weight asked for, `@mdi/font`'s stylesheet
/// (which finds its fonts at `../fonts/`).
const LINKS: [(&str, &str); 2] = [
    (
        r#"<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto:100,300,400,500,700,900">"#,
        concat!(
            r#"<link rel="stylesheet" href="fonts/roboto/100.css">"#,
            r#"<link rel="stylesheet" href="fonts/roboto/300.css">"#,
            r#"<link rel="stylesheet" href="fonts/roboto/400.css">"#,
            r#"<link rel="stylesheet" href="fonts/roboto/500.css">"#,
            r#"<link rel="stylesheet" href="fonts/roboto/700.css">"#,
            r#"<link rel="stylesheet" href="fonts/roboto/900.css">"#,
        ),
    ),
    (
        r#"<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/@mdi/font@latest/css/materialdesignicons.min.css">"#,
        r#"<link rel="stylesheet" href="fonts/mdi/css/materialdesignicons.min.css">"#,
    ),
];

/// The font packages under `admin.ui.fonts_dir`: (where `/ui/` serves it, the package's
/// folder, a file it must have).
pub const FONT_PACKAGES: [(&str, &str, &str); 2] = [
    ("/fonts/roboto", "@fontsource/roboto", "400.css"),
    ("/fonts/mdi", "@mdi/font", "css/materialdesignicons.min.css"),
];

/// `router` with `/ui/` serving `static_dir`, and the fonts from `fonts_dir` when set.
pub fn serve(
    router: Router,
    static_dir: &Path,
    fonts_dir: Option<&Path>,
) -> Result<Router, AdminUiError> {
    let mut files = Router::new().fallback_service(ServeDir::new(static_dir));
    if let Some(fonts_dir) = fonts_dir {
        let index = static_dir.join("index.html");
        let page = std::fs::read_to_string(&index)
            .map_err(|e| AdminUiError::Index(index.clone(), e.to_string()))?;
        local_fonts(&page).map_err(|link| AdminUiError::Index(index.clone(), link))?;
        let index = Arc::new(index);
        files = files
            .route("/", get(index_page).with_state(index.clone()))
            .route("/index.html", get(index_page).with_state(index));
        for (path, package, _) in FONT_PACKAGES {
            files = files.nest_service(path, ServeDir::new(fonts_dir.join(package)));
        }
    }
    Ok(router
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .nest_service("/ui/", files))
}

/// `page` (the UI's `index.html`) linking the local fonts; the link not found otherwise
/// (another version of the UI).
fn local_fonts(page: &str) -> Result<String, String> {
    let mut page = page.to_owned();
    for (external, local) in LINKS {
        if !page.contains(external) {
            return Err(format!(
                "no {external} to replace with the fonts of admin.ui.fonts_dir"
            ));
        }
        page = page.replace(external, local);
    }
    Ok(page)
}

/// The UI's `index.html`, read at each request (an upgraded UI renames its scripts).
async fn index_page(State(index): State<Arc<PathBuf>>) -> Response {
    let page = match tokio::fs::read_to_string(index.as_path()).await {
        Ok(page) => page,
        Err(e) => {
            warn!(path = %index.display(), error = %e, "admin ui: cannot read index.html");
            return StatusCode::NOT_FOUND.into_response();
        }
    };
    match local_fonts(&page) {
        Ok(page) => ([(header::CACHE_CONTROL, "no-cache")], Html(page)).into_response(),
        Err(missing) => {
            warn!(path = %index.display(), %missing, "admin ui: index.html served unchanged");
            Html(page).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    /// A UI folder and a fonts folder as npm installs them, in a temporary folder (removed
    /// when the first value is dropped).
    fn install() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dist = root.path().join("dist");
        std::fs::create_dir_all(dist.join("css")).unwrap();
        std::fs::write(
            dist.join("index.html"),
            format!(
                "<head>{}{}<link href=\"css/app.css\" rel=\"stylesheet\"></head>",
                LINKS[0].0, LINKS[1].0
            ),
        )
        .unwrap();
        std::fs::write(dist.join("css/app.css"), "body{}").unwrap();
        let fonts = root.path().join("node_modules");
        for (_, package, file) in FONT_PACKAGES {
            let path = fonts.join(package).join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, format!("/* {package} */")).unwrap();
        }
        (root, dist, fonts)
    }

    async fn get(router: &Router, path: &str) -> (StatusCode, String) {
        let response = router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn with_a_fonts_dir_the_page_links_only_local_fonts() {
        let (_root, dist, fonts) = install();
        let router = serve(Router::new(), &dist, Some(&fonts)).unwrap();
        for path in ["/ui/", "/ui/index.html"] {
            let (status, page) = get(&router, path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(!page.contains("https://"), "{path}: {page}");
            assert!(page.contains("href=\"fonts/roboto/500.css\""), "{page}");
            assert!(
                page.contains("href=\"fonts/mdi/css/materialdesignicons.min.css\""),
                "{page}"
            );
            assert!(page.contains("css/app.css"), "the rest is kept: {page}");
        }
        let (status, css) = get(&router, "/ui/fonts/mdi/css/materialdesignicons.min.css").await;
        assert_eq!((status, css.as_str()), (StatusCode::OK, "/* @mdi/font */"));
        let (status, css) = get(&router, "/ui/fonts/roboto/400.css").await;
        assert_eq!(
            (status, css.as_str()),
            (StatusCode::OK, "/* @fontsource/roboto */")
        );
        let (status, css) = get(&router, "/ui/css/app.css").await;
        assert_eq!((status, css.as_str()), (StatusCode::OK, "body{}"));
        let html = std::fs::read_to_string(dist.join("index.html")).unwrap();
        assert!(html.contains(LINKS[1].0), "the file on disk is unchanged");
    }

    #[tokio::test]
    async fn without_a_fonts_dir_the_page_is_served_as_installed() {
        let (_root, dist, _) = install();
        let router = serve(Router::new(), &dist, None).unwrap();
        let (status, page) = get(&router, "/ui/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            page.contains(LINKS[0].0) && page.contains(LINKS[1].0),
            "{page}"
        );
        assert_eq!(
            get(&router, "/ui/fonts/roboto/400.css").await.0,
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn a_page_without_the_links_is_refused_at_start() {
        let (_root, dist, fonts) = install();
        std::fs::write(dist.join("index.html"), "<head></head>").unwrap();
        let error = serve(Router::new(), &dist, Some(&fonts)).unwrap_err();
        assert!(
            error.to_string().contains("fonts.googleapis.com"),
            "{error}"
        );
    }
}
