//! The DDS side of ROS 2, on RustDDS. The output: one participant, one
//! publisher, the tracked-list writer, and two writers per face created
//! when the face first appears and dropped when its track ends. The image
//! source: one participant and a best-effort reader of the camera topic
//! ([`CameraReader`]).

use std::collections::BTreeMap;

use rustdds::no_key::{DataReader, DataWriter};
use rustdds::policy::{Durability, History, Reliability};
use rustdds::{
    CDRDeserializerAdapter, CDRSerializerAdapter, DomainParticipant, DomainParticipantBuilder,
    Publisher, QosPolicies, QosPolicyBuilder, ReadCondition, Subscriber, TopicKind,
};
use serde::Serialize;

use super::image::{CompressedImageMsg, ImageMsg, Transport};
use super::msgs::{self, Header};
use super::{DiscoveryRange, Network, Ros2Config, Ros2Error, Update};

type Writer<T> = DataWriter<T, CDRSerializerAdapter<T>>;

/// The writers of one face.
struct FaceWriters {
    expression: Writer<msgs::ExpressionMsg>,
    roi: Writer<msgs::NormalizedRoi>,
}

/// A joined domain and its writers.
pub struct Node {
    participant: DomainParticipant,
    publisher: Publisher,
    qos: QosPolicies,
    /// `[ros2] frame_id`, when set: wins over the image's own.
    frame_id: Option<String>,
    /// The frame id of the images read last (a ROS 2 source).
    image_frame_id: Option<String>,
    tracked: Writer<msgs::IdsList>,
    faces: BTreeMap<u64, FaceWriters>,
    /// Write errors, logged at the first and at the end.
    errors: u64,
}

fn entity_error(what: &str, e: impl std::fmt::Debug) -> Ros2Error {
    Ros2Error::Entity {
        what: what.to_string(),
        why: format!("{e:?}"),
    }
}

/// Joins the domain, on loopback only unless the range is the subnet.
fn participant(net: &Network) -> Result<DomainParticipant, Ros2Error> {
    let mut builder = DomainParticipantBuilder::new(net.domain_id);
    if net.range == DiscoveryRange::Localhost {
        // Multicast joins and sends, and the locators advertised in
        // discovery, on loopback only: nothing about the people in
        // front of the camera goes onto the LAN. (RustDDS still binds
        // its unicast ports on the wildcard address; it advertises and
        // sends only loopback locators. A firewall is the hard limit.)
        builder = builder
            .with_only_networks([std::net::Ipv4Addr::LOCALHOST])
            .same_host_loopback(true);
    }
    builder.build().map_err(|e| Ros2Error::Participant {
        domain: net.domain_id,
        why: format!("{e:?}"),
    })
}

type Reader<T> = DataReader<T, CDRDeserializerAdapter<T>>;

/// The camera topic's reader, of the message its name calls for.
enum Images {
    Raw(Reader<ImageMsg>),
    Compressed(Reader<CompressedImageMsg>),
}

/// One image sample as DDS delivered it.
pub enum ImageSample {
    Raw(ImageMsg),
    Compressed(CompressedImageMsg),
}

/// A camera topic read on a joined domain: best effort, so it matches
/// camera drivers that publish best effort (SensorDataQoS) and those that
/// publish reliably; volatile; the last few samples kept.
pub struct CameraReader {
    images: Images,
    _subscriber: Subscriber,
    _participant: DomainParticipant,
}

/// Samples the reader keeps for [`CameraReader::take_latest`]; older ones
/// are replaced by DDS itself.
const IMAGE_HISTORY: i32 = 3;

impl CameraReader {
    pub fn join(net: &Network, topic: &str) -> Result<CameraReader, Ros2Error> {
        let participant = participant(net)?;
        let qos = QosPolicyBuilder::new()
            .reliability(Reliability::BestEffort)
            .durability(Durability::Volatile)
            .history(History::KeepLast {
                depth: IMAGE_HISTORY,
            })
            .build();
        let subscriber = participant
            .create_subscriber(&qos)
            .map_err(|e| entity_error("subscriber", e))?;
        let transport = Transport::of_topic(topic);
        let dds_topic = participant
            .create_topic(
                msgs::dds_topic(topic),
                transport.type_name().to_string(),
                &qos,
                TopicKind::NoKey,
            )
            .map_err(|e| entity_error(&format!("topic {topic}"), e))?;
        let reader_error = |e| entity_error(&format!("reader of {topic}"), e);
        let images = match transport {
            Transport::Raw => Images::Raw(
                subscriber
                    .create_datareader_no_key_cdr::<ImageMsg>(&dds_topic, Some(qos.clone()))
                    .map_err(reader_error)?,
            ),
            Transport::Compressed => Images::Compressed(
                subscriber
                    .create_datareader_no_key_cdr::<CompressedImageMsg>(&dds_topic, Some(qos))
                    .map_err(reader_error)?,
            ),
        };
        Ok(CameraReader {
            images,
            _subscriber: subscriber,
            _participant: participant,
        })
    }

    /// The newest sample that arrived since the last call, and how many
    /// older ones it replaced; None when nothing new came. A sample that
    /// does not deserialise is an error (it is skipped).
    pub fn take_latest(&mut self) -> Result<Option<(ImageSample, u64)>, String> {
        fn newest<T: serde::de::DeserializeOwned + 'static>(
            r: &mut Reader<T>,
            wrap: fn(T) -> ImageSample,
        ) -> Result<Option<(ImageSample, u64)>, String> {
            let mut all = r
                .take(IMAGE_HISTORY as usize, ReadCondition::not_read())
                .map_err(|e| format!("a sample could not be read ({e:?})"))?;
            let replaced = all.len().saturating_sub(1) as u64;
            Ok(all.pop().map(|s| (wrap(s.into_value()), replaced)))
        }
        match &mut self.images {
            Images::Raw(r) => newest(r, ImageSample::Raw),
            Images::Compressed(r) => newest(r, ImageSample::Compressed),
        }
    }
}

impl Node {
    pub fn join(cfg: &Ros2Config, net: &Network) -> Result<Node, Ros2Error> {
        let participant = participant(net)?;
        // Reliable and transient local, depth 1: matches ROS 2's default
        // QoS, sensor-data (best effort) and latched subscribers alike.
        let qos = QosPolicyBuilder::new()
            .reliability(Reliability::Reliable {
                max_blocking_time: rustdds::Duration::from_millis(100),
            })
            .durability(Durability::TransientLocal)
            .history(History::KeepLast { depth: 1 })
            .build();
        let publisher = participant
            .create_publisher(&qos)
            .map_err(|e| entity_error("publisher", e))?;
        let tracked = writer(
            &participant,
            &publisher,
            &qos,
            msgs::TRACKED_TOPIC,
            msgs::IDS_LIST_TYPE,
        )?;
        let mut node = Node {
            participant,
            publisher,
            qos,
            frame_id: cfg.frame_id.clone(),
            image_frame_id: None,
            tracked,
            faces: BTreeMap::new(),
            errors: 0,
        };
        // Nobody yet: what a late subscriber reads until the first face.
        let header = node.header(crate::frame::unix_now());
        let first = msgs::tracked(header, &[]);
        node.write(|n| n.tracked.write(first, None).map_err(|e| format!("{e:?}")));
        Ok(node)
    }

    fn header(&self, unix: f64) -> Header {
        Header {
            stamp: msgs::Time::from_unix(unix),
            frame_id: self
                .frame_id
                .as_ref()
                .or(self.image_frame_id.as_ref())
                .map_or_else(|| "camera".to_string(), String::clone),
        }
    }

    /// Publishes one frame: each face's expression and ROI, then the
    /// tracked list when it changed.
    pub fn publish(&mut self, u: &Update) {
        if u.frame_id.is_some() {
            self.image_frame_id.clone_from(&u.frame_id);
        }
        for f in &u.faces {
            if !self.faces.contains_key(&f.track_id) {
                match self.face_writers(f.track_id) {
                    Ok(w) => {
                        self.faces.insert(f.track_id, w);
                    }
                    Err(e) => {
                        self.count_error(&e.to_string());
                        continue;
                    }
                }
            }
            let header = self.header(u.unix);
            let (expression, roi) = (
                msgs::expression(header.clone(), f),
                msgs::roi(header, f, u.width, u.height),
            );
            self.write(|n| {
                let w = &n.faces[&f.track_id];
                w.expression
                    .write(expression, None)
                    .map_err(|e| format!("{e:?}"))?;
                w.roi.write(roi, None).map_err(|e| format!("{e:?}"))
            });
        }
        if let Some(ids) = &u.tracked {
            let list = msgs::tracked(self.header(u.unix), ids);
            self.write(|n| n.tracked.write(list, None).map_err(|e| format!("{e:?}")));
        }
        for id in &u.ended {
            self.faces.remove(id);
        }
    }

    fn face_writers(&self, track_id: u64) -> Result<FaceWriters, Ros2Error> {
        Ok(FaceWriters {
            expression: writer(
                &self.participant,
                &self.publisher,
                &self.qos,
                &msgs::expression_topic(track_id),
                msgs::EXPRESSION_TYPE,
            )?,
            roi: writer(
                &self.participant,
                &self.publisher,
                &self.qos,
                &msgs::roi_topic(track_id),
                msgs::ROI_TYPE,
            )?,
        })
    }

    fn write(&mut self, f: impl FnOnce(&Node) -> Result<(), String>) {
        if let Err(e) = f(self) {
            self.count_error(&e);
        }
    }

    fn count_error(&mut self, e: &str) {
        self.errors += 1;
        if self.errors == 1 {
            tracing::warn!("ROS 2 output: {e} (further errors are counted)");
        }
    }

    /// Leaves the domain: writers first, then their publisher, then the
    /// participant (whose drop announces the leave); the other order makes
    /// RustDDS log errors for every writer.
    pub fn finish(self) {
        if self.errors > 0 {
            tracing::warn!("ROS 2 output: {} write errors", self.errors);
        }
        let Node {
            participant,
            publisher,
            tracked,
            faces,
            ..
        } = self;
        drop(faces);
        drop(tracked);
        drop(publisher);
        drop(participant);
    }
}

fn writer<T: Serialize>(
    participant: &DomainParticipant,
    publisher: &Publisher,
    qos: &QosPolicies,
    ros_topic: &str,
    type_name: &str,
) -> Result<Writer<T>, Ros2Error> {
    let topic = participant
        .create_topic(
            msgs::dds_topic(ros_topic),
            type_name.to_string(),
            qos,
            TopicKind::NoKey,
        )
        .map_err(|e| entity_error(&format!("topic {ros_topic}"), e))?;
    publisher
        .create_datawriter_no_key_cdr::<T>(&topic, None)
        .map_err(|e| entity_error(&format!("writer of {ros_topic}"), e))
}
