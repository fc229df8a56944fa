//! A TCP proxy between a service under test and a real server (Azurite): it forwards bytes both
//! ways, and on command refuses every connection (an outage: open connections are cut too) or
//! holds a request that contains a marker (a store hanging in the middle of an upload).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Up,
    /// Connections are accepted and closed at once; open ones are cut.
    Down,
    /// Like `Up`, but a request whose bytes hold the marker is never forwarded.
    HoldOn(String),
}

pub struct Proxy {
    pub port: u16,
    mode: Arc<Mutex<Mode>>,
    held: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(Mutex::new(Mode::Up));
        let held = Arc::new(AtomicBool::new(false));
        let (m, h) = (mode.clone(), held.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if *m.lock().unwrap() == Mode::Down {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                for s in [&client, &server] {
                    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
                }
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (m1, m2, h1) = (m.clone(), m.clone(), h.clone());
                std::thread::spawn(move || pump(client, server, m1, Some(h1)));
                std::thread::spawn(move || pump(s2, c2, m2, None));
            }
        });
        Proxy { port, mode, held }
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Forgets that a request was held (for the next `held`).
    pub fn reset_held(&self) {
        self.held.store(false, Ordering::SeqCst);
    }

    /// Whether a request matching the `HoldOn` marker has been held.
    pub fn held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }
}

/// Copies `from` → `to` until either side closes or the proxy goes down; with `held`, a chunk
/// holding the `HoldOn` marker stops the copy (the connection hangs) until the mode changes.
fn pump(mut from: TcpStream, mut to: TcpStream, mode: Arc<Mutex<Mode>>, held: Option<Arc<AtomicBool>>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut holding = false;
    loop {
        let now = mode.lock().unwrap().clone();
        match &now {
            Mode::Down => break,
            Mode::HoldOn(_) if holding => {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            _ if holding => break, // released: cut the held request
            _ => {}
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let (Mode::HoldOn(marker), Some(h)) = (&now, &held) {
                    if buf[..n].windows(marker.len()).any(|w| w == marker.as_bytes()) {
                        h.store(true, Ordering::SeqCst);
                        holding = true;
                        continue;
                    }
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
