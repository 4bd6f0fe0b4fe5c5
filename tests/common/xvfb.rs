//! A private X server per test: Xvfb picks its own free display number, so tests running
//! side by side never race for one.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A private X server, killed when the test ends however it ends.
pub struct Xvfb {
    child: Child,
    /// Its display name, e.g. `:7`.
    pub display: String,
}

impl Xvfb {
    /// A server with one 24-bit screen of this size; None (after `skip_or_fail`) without Xvfb.
    pub fn start(width: u32, height: u32) -> Option<Self> {
        let spawned = Command::new("Xvfb")
            // -displayfd: Xvfb picks a free display number and writes it once it accepts
            // connections, so parallel tests never race for a number or poll for a socket.
            .args(["-displayfd", "1", "-nolisten", "tcp", "-screen", "0"])
            .arg(format!("{width}x{height}x24"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                super::skip::skip_or_fail(&format!(
                    "Xvfb could not be started ({e}); scripts/setup --test installs it"
                ));
                return None;
            }
        };
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let number: u32 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("Xvfb did not report its display: {line:?}"));
        Some(Self {
            child,
            display: format!(":{number}"),
        })
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
