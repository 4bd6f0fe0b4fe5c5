//! One rustls crypto provider for the whole process.

/// Installs ring as rustls' process-wide provider unless one is installed already.
/// (webrtc already builds ring; a second provider would make rustls refuse to choose.)
pub fn ensure_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
