//! The embedded MQTT broker (rumqttd), for a single box that needs nothing
//! else: the daemon publishes to it, robots and kiosk UIs subscribe to it.
//!
//! In: a listen address. Out: a broker running on its own threads for the
//! life of the process. rumqttd only logs a failure to bind from inside its
//! server thread, so we bind the address ourselves first (to report "in
//! use" clearly) and then wait until it accepts connections.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Why the embedded broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("embedded MQTT broker cannot listen on {addr}: {source}; another broker (mosquitto?) may hold the port: stop it, change [mqtt] listen, or set [mqtt] embedded = false to use it")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("embedded MQTT broker on {addr} did not accept connections within {waited_ms} ms")]
    NotReady { addr: SocketAddr, waited_ms: u128 },
}

/// Starts rumqttd on `addr` and returns once it accepts TCP connections.
pub fn start(addr: SocketAddr) -> Result<(), BrokerError> {
    drop(TcpListener::bind(addr).map_err(|source| BrokerError::Bind { addr, source })?);
    let server = ServerSettings {
        name: "fer-edge-v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: 256 * 1024,
            max_inflight_count: 200,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 256,
            max_outgoing_packet_count: 200,
            // Small commit-log segments keep the daemon's memory bounded
            // (rumqttd's example config uses 100 MB segments).
            max_segment_size: 1024 * 1024,
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some([("1".to_string(), server)].into_iter().collect()),
        ..Default::default()
    };
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!("embedded MQTT broker stopped: {e}");
            }
        })
        .map_err(|source| BrokerError::Bind { addr, source })?;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            tracing::info!(%addr, "embedded MQTT broker listening");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError::NotReady {
        addr,
        waited_ms: t0.elapsed().as_millis(),
    })
}
