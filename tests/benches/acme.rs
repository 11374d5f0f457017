//! Certificate issuance benchmark, run by `bench/run` (`cargo bench -p
//! launch-e2e --bench acme`): the agent's certificate manager against a real
//! pebble (real HTTP-01 validation over loopback), timed from the moment a
//! name enters the route table (`set_names`) until a TLS client trusting
//! pebble's root completes a handshake for it, 10 names one after another.

use std::time::{Duration, Instant};

use launch_agent::ingress::Certificates;
use launch_agent::ingress::certs::Clock;
use launch_e2e::cert_door::CertDoor;
use launch_e2e::pebble::{Pebble, PebbleOptions};
use launch_e2e::unique::free_port;

const NAMES: usize = 10;

fn main() {
    let pebble = Pebble::start(PebbleOptions {
        http_port: free_port(),
        validity: None,
    });
    let data = tempfile::tempdir().unwrap();
    let door = CertDoor::start(&pebble, data.path(), Clock::system());
    let root = pebble.issuing_root_pem();
    let mut names = Vec::new();
    let mut times = Vec::new();
    for i in 0..NAMES {
        let host = format!("bench{i}.test");
        names.push(host.clone());
        let start = Instant::now();
        door.certs.set_names(&names);
        // Polled every 10 ms (the harness's `eventually` polls every 100 ms).
        while door.get(&root, &host).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{host} not served after 60 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        times.push(start.elapsed());
    }
    assert_eq!(pebble.orders(), NAMES, "one order per name");
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "acme issuance: order → serving p50 {:.0} ms, min {:.0} ms, max {:.0} ms over {NAMES} names (pebble, real HTTP-01, account registered by the first)",
        ms(times[NAMES / 2]),
        ms(times[0]),
        ms(times[NAMES - 1])
    );
}
