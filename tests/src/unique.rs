//! Unique names and free ports, so tests running in parallel (nextest runs
//! each test in its own process) never collide on a compose project, a
//! container name or a published port.

use std::net::TcpListener;

use rand::Rng;

/// A service name no other test uses: `t` + 10 random hex digits.
pub fn service_name() -> String {
    format!("t{}", hex(5))
}

/// `n` random bytes as lower-case hex (e.g. for secret values and markers).
pub fn hex(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// A TCP port free on every interface right now, picked at random below the
/// kernel's ephemeral range so outgoing connections do not take it meanwhile.
pub fn free_port() -> u16 {
    let mut rng = rand::rng();
    for _ in 0..1000 {
        let port = rng.random_range(20_000..32_000);
        if TcpListener::bind(("0.0.0.0", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free TCP port found between 20000 and 32000 after 1000 tries")
}
