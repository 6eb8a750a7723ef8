//! The bearer token attached to every call, by a tonic interceptor.

use std::{fmt, sync::Arc};

use tonic::{Request, Status, metadata::MetadataValue, service::Interceptor};

type Provider = dyn Fn() -> Result<String, String> + Send + Sync;

/// Where the `authorization: Bearer …` metadata of each call comes from.
#[derive(Clone, Default)]
pub enum TokenSource {
    /// No token (a gateway with an open control port).
    #[default]
    None,
    /// The same token on every call.
    Static(String),
    /// A callback asked on every call, so it can hand out a refreshed token. It should be
    /// cheap (return a cached token and refresh it in the background or when it nears
    /// expiry); an `Err` fails the call with `UNAUTHENTICATED` before anything is sent.
    Provider(Arc<Provider>),
}

impl TokenSource {
    /// A static token.
    pub fn fixed(token: impl Into<String>) -> Self {
        TokenSource::Static(token.into())
    }

    /// A token asked from `provider` on every call.
    pub fn refreshing(
        provider: impl Fn() -> Result<String, String> + Send + Sync + 'static,
    ) -> Self {
        TokenSource::Provider(Arc::new(provider))
    }

    fn current(&self) -> Result<Option<String>, Status> {
        match self {
            TokenSource::None => Ok(None),
            TokenSource::Static(token) => Ok(Some(token.clone())),
            TokenSource::Provider(provider) => provider()
                .map(Some)
                .map_err(|e| Status::unauthenticated(format!("token provider failed: {e}"))),
        }
    }
}

impl fmt::Debug for TokenSource {
    // Never prints the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenSource::None => "TokenSource::None",
            TokenSource::Static(_) => "TokenSource::Static(<redacted>)",
            TokenSource::Provider(_) => "TokenSource::Provider(..)",
        })
    }
}

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone, Debug, Default)]
pub struct BearerToken {
    source: TokenSource,
}

impl BearerToken {
    /// An interceptor taking its token from `source`.
    pub fn new(source: TokenSource) -> Self {
        BearerToken { source }
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = self.source.current()? {
            let mut value: MetadataValue<_> = format!("Bearer {token}")
                .parse()
                .map_err(|_| Status::unauthenticated("the token is not a valid header value"))?;
            value.set_sensitive(true);
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn header(source: TokenSource) -> Result<Option<String>, Status> {
        let request = BearerToken::new(source).call(Request::new(()))?;
        Ok(request
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned()))
    }

    #[test]
    fn static_and_absent_tokens() {
        assert_eq!(header(TokenSource::None).unwrap(), None);
        assert_eq!(
            header(TokenSource::fixed("abc")).unwrap().as_deref(),
            Some("Bearer abc")
        );
    }

    #[test]
    fn provider_is_asked_on_every_call() {
        let calls = Arc::new(AtomicU32::new(0));
        let counter = calls.clone();
        let source = TokenSource::refreshing(move || {
            Ok(format!("t{}", counter.fetch_add(1, Ordering::SeqCst)))
        });
        let mut interceptor = BearerToken::new(source);
        for expected in ["Bearer t0", "Bearer t1"] {
            let request = interceptor.call(Request::new(())).unwrap();
            assert_eq!(request.metadata().get("authorization").unwrap(), expected);
        }
    }

    #[test]
    fn failing_provider_fails_the_call_unauthenticated() {
        let status = header(TokenSource::refreshing(|| Err("vault sealed".into()))).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(status.message().contains("vault sealed"));
        let status = header(TokenSource::fixed("bad\ntoken")).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn debug_never_shows_the_token() {
        assert!(!format!("{:?}", TokenSource::fixed("secret")).contains("secret"));
    }
}
