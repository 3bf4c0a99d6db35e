//! Micro-benchmarks of the hot pure functions: colour conversion, resampling,
//! the alignment warp, NMS and the tracker update. `cargo bench`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use fer_edge::align::{eye_transform, warp, Framing};
use fer_edge::capture::convert::yuyv_to_rgb;
use fer_edge::detect::nms::{nms, Overlap};
use fer_edge::detect::resample::resize_area;
use fer_edge::frame::{BBox, RgbImage};
use fer_edge::track::{Tracker, TrackerConfig};

fn frame() -> RgbImage {
    image::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/frames640/six_faces.png"
    ))
    .unwrap()
    .to_rgb8()
}

fn benches(c: &mut Criterion) {
    let img = frame();
    let yuyv: Vec<u8> = img
        .as_raw()
        .chunks(6)
        .flat_map(|p| [p[1], 128, p[4], 128])
        .collect();
    c.bench_function("yuyv_to_rgb 640x480", |b| {
        b.iter(|| yuyv_to_rgb(black_box(&yuyv), 640, 480, 1280).unwrap())
    });
    c.bench_function("resize_area 640x480 -> 384x288 (first P-Net level)", |b| {
        b.iter(|| resize_area(black_box(&img), [0.0, 0.0, 640.0, 480.0], 384, 288))
    });
    c.bench_function("resize_area face crop -> 24x24 (R-Net input)", |b| {
        b.iter(|| resize_area(black_box(&img), [230.0, 130.0, 60.0, 60.0], 24, 24))
    });
    let framing = Framing {
        width: 227,
        height: 227,
        eye_distance: 0.36,
        eye_line: 0.4,
    };
    let m = eye_transform([250.0, 160.0], [290.0, 166.0], &framing).unwrap();
    c.bench_function("align warp 227x227", |b| {
        b.iter(|| warp(black_box(&img), &m, 227, 227))
    });
    let boxes: Vec<[f32; 4]> = (0..400)
        .map(|i| {
            let (x, y) = ((i * 37 % 600) as f32, (i * 53 % 440) as f32);
            [x, y, x + 30.0 + (i % 7) as f32, y + 30.0 + (i % 5) as f32]
        })
        .collect();
    let scores: Vec<f32> = (0..400)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    c.bench_function("nms 400 boxes", |b| {
        b.iter(|| nms(black_box(&boxes), &scores, 0.7, Overlap::Union))
    });
    let dets: Vec<BBox> = (0..6)
        .map(|i| BBox {
            x: 60.0 + 90.0 * i as f32,
            y: 100.0,
            w: 60.0,
            h: 75.0,
        })
        .collect();
    c.bench_function("tracker update, 6 faces", |b| {
        let mut tr = Tracker::new(TrackerConfig::default());
        let mut t = 0.0;
        b.iter(|| {
            t += 1.0 / 15.0;
            let moved: Vec<BBox> = dets
                .iter()
                .map(|d| BBox {
                    x: d.x + (t as f32 * 10.0) % 40.0,
                    ..*d
                })
                .collect();
            black_box(tr.update(t, &moved))
        })
    });
}

criterion_group!(hot, benches);
criterion_main!(hot);
