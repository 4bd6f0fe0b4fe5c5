//! meshcall: a native desktop video-conference app. This library holds everything; the
//! `meshcall` binary only parses its command line and calls in here.

pub mod client;
pub mod engine;
pub mod media;
pub mod participant;
pub mod proto;
pub mod server;
pub mod session;
pub mod sfu;
pub mod tls;
pub mod ui;
