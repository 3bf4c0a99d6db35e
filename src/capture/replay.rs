//! Replay: a folder of images (name order) or a video file, as a source.
//!
//! In: `[source] path`, `fps`, `loop`, `pace`. Out: frames stamped
//! `seq / fps` seconds, so tracking and smoothing behave the same whether
//! the replay is paced in real time or run flat out. Video files are decoded
//! by the `ffmpeg` program into raw RGB on a pipe (Debian's `ffmpeg`): no
//! codec code is linked into fer-edge. A file that cannot be decoded spoils
//! only its frame.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use super::{CaptureError, Frame, FrameSource, SourceConfig};
use crate::frame::RgbImage;
use crate::imageio;

enum Media {
    Images {
        files: Vec<PathBuf>,
        next: usize,
    },
    Video {
        path: PathBuf,
        width: u32,
        height: u32,
        child: Option<(Child, ChildStdout)>,
    },
}

/// A replayed recording.
pub struct Replay {
    what: String,
    media: Media,
    fps: f64,
    looping: bool,
    pace: bool,
    max_pixels: u64,
    seq: u64,
    started: Option<Instant>,
}

impl Replay {
    pub fn open(cfg: &SourceConfig) -> Result<Replay, CaptureError> {
        let path = cfg.path.clone().unwrap_or_default();
        let what = path.display().to_string();
        let open_err = |reason: String| CaptureError::Open {
            what: what.clone(),
            reason,
        };
        let media = if path.is_dir() {
            let mut sink = Vec::new();
            let (files, _) = imageio::expand_inputs(std::slice::from_ref(&path), &mut sink);
            if files.is_empty() {
                return Err(open_err("the folder holds no .png/.jpg/.jpeg files".into()));
            }
            Media::Images { files, next: 0 }
        } else if path.is_file() {
            let (width, height) = probe_video(&path).map_err(open_err)?;
            if width as u64 * height as u64 > cfg.max_pixels {
                return Err(open_err(format!(
                    "the video's frames are {width}x{height}, over source.max_pixels = {}: \
                     scale it down (ffmpeg -vf scale=1920:-2) or raise the limit",
                    cfg.max_pixels
                )));
            }
            Media::Video {
                path: path.clone(),
                width,
                height,
                child: None,
            }
        } else {
            return Err(open_err("no such file or folder; set [source] path".into()));
        };
        Ok(Replay {
            what,
            media,
            fps: cfg.fps,
            looping: cfg.loop_,
            pace: cfg.pace,
            max_pixels: cfg.max_pixels,
            seq: 0,
            started: None,
        })
    }

    fn read_next(&mut self) -> Result<Option<RgbImage>, CaptureError> {
        let what = self.what.clone();
        match &mut self.media {
            Media::Images { files, next } => {
                if *next >= files.len() {
                    if !self.looping {
                        return Ok(None);
                    }
                    *next = 0;
                }
                let file = files[*next].clone();
                *next += 1;
                imageio::decode_file_within(
                    &file,
                    crate::fileio::IMAGE_LIMIT_DEFAULT,
                    self.max_pixels,
                )
                .map(Some)
                .map_err(|reason| CaptureError::Frame {
                    what: file.display().to_string(),
                    reason,
                })
            }
            Media::Video {
                path,
                width,
                height,
                child,
            } => {
                for attempt in 0..2 {
                    if child.is_none() {
                        *child =
                            Some(spawn_decoder(path).map_err(|reason| CaptureError::Open {
                                what: what.clone(),
                                reason,
                            })?);
                    }
                    let (_, out) = child.as_mut().expect("decoder spawned above");
                    let mut buf = vec![0u8; (*width * *height * 3) as usize];
                    match out.read_exact(&mut buf) {
                        Ok(()) => {
                            return Ok(Some(
                                RgbImage::from_raw(*width, *height, buf)
                                    .expect("buffer sized to the frame"),
                            ));
                        }
                        Err(_) => {
                            // End of stream (or a dead decoder): reap it, then loop or finish.
                            if let Some((mut c, _)) = child.take() {
                                let _ = c.kill();
                                let _ = c.wait();
                            }
                            if !self.looping || attempt == 1 {
                                return Ok(None);
                            }
                        }
                    }
                }
                Ok(None)
            }
        }
    }
}

impl FrameSource for Replay {
    fn describe(&self) -> String {
        let kind = match &self.media {
            Media::Images { files, .. } => format!("{} images", files.len()),
            Media::Video { width, height, .. } => format!("video {width}x{height}"),
        };
        format!(
            "replay of {} ({kind}) at {} fps{}{}",
            self.what,
            self.fps,
            if self.pace { ", paced" } else { ", unpaced" },
            if self.looping { ", looping" } else { "" }
        )
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        let started = *self.started.get_or_insert_with(Instant::now);
        let seq = self.seq;
        self.seq += 1;
        let timestamp = seq as f64 / self.fps;
        if self.pace {
            let due = started + Duration::from_secs_f64(timestamp);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let image = self.read_next()?;
        Ok(image.map(|image| Frame {
            seq,
            timestamp,
            captured_at: Instant::now(),
            image,
            origin: None,
        }))
    }

    fn is_live(&self) -> bool {
        self.pace
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        if let Media::Video {
            child: Some((c, _)),
            ..
        } = &mut self.media
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn probe_video(path: &Path) -> Result<(u32, u32), String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .map_err(|e| format!("replaying a video file needs ffprobe/ffmpeg ({e}); install them (apt-get install ffmpeg) or replay a folder of images"))?;
    if !out.status.success() {
        return Err(format!(
            "ffprobe cannot read it as a video: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.trim().split(',').map(|v| v.trim().parse::<u32>());
    match (it.next(), it.next()) {
        (Some(Ok(w)), Some(Ok(h))) if w > 0 && h > 0 => Ok((w, h)),
        _ => Err(format!(
            "ffprobe found no video stream (said {:?})",
            text.trim()
        )),
    }
}

fn spawn_decoder(path: &Path) -> Result<(Child, ChildStdout), String> {
    let mut child = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start ffmpeg: {e}; install it (apt-get install ffmpeg)"))?;
    let out = child.stdout.take().ok_or("ffmpeg gave no stdout")?;
    Ok((child, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder_with(n: usize, corrupt_at: Option<usize>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..n {
            let p = dir.path().join(format!("{i:03}.png"));
            if Some(i) == corrupt_at {
                std::fs::write(&p, b"not a png").unwrap();
            } else {
                RgbImage::from_pixel(32, 24, image::Rgb([i as u8, 0, 0]))
                    .save(&p)
                    .unwrap();
            }
        }
        dir
    }

    fn cfg(path: &Path, looping: bool) -> SourceConfig {
        SourceConfig {
            path: Some(path.into()),
            fps: 10.0,
            loop_: looping,
            pace: false,
            ..Default::default()
        }
    }

    #[test]
    fn a_folder_replays_in_name_order_with_nominal_timestamps_then_ends() {
        let dir = folder_with(3, None);
        let mut r = Replay::open(&cfg(dir.path(), false)).unwrap();
        for i in 0..3 {
            let f = r.next_frame().unwrap().unwrap();
            assert_eq!(f.seq, i);
            assert!((f.timestamp - i as f64 / 10.0).abs() < 1e-9);
            assert_eq!(f.image.get_pixel(0, 0)[0], i as u8);
        }
        assert!(r.next_frame().unwrap().is_none());
    }

    #[test]
    fn a_looping_replay_starts_again_and_keeps_counting() {
        let dir = folder_with(2, None);
        let mut r = Replay::open(&cfg(dir.path(), true)).unwrap();
        let seqs: Vec<(u64, u8)> = (0..5)
            .map(|_| r.next_frame().unwrap().unwrap())
            .map(|f| (f.seq, f.image.get_pixel(0, 0)[0]))
            .collect();
        assert_eq!(seqs, vec![(0, 0), (1, 1), (2, 0), (3, 1), (4, 0)]);
    }

    #[test]
    fn a_corrupt_file_spoils_only_its_frame() {
        let dir = folder_with(3, Some(1));
        let mut r = Replay::open(&cfg(dir.path(), false)).unwrap();
        assert!(r.next_frame().unwrap().is_some());
        let e = r.next_frame().unwrap_err();
        assert!(
            matches!(e, CaptureError::Frame { .. }) && e.to_string().contains("001.png"),
            "{e}"
        );
        assert_eq!(r.next_frame().unwrap().unwrap().seq, 2);
    }

    #[test]
    fn an_empty_or_missing_path_fails_at_open() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Replay::open(&cfg(dir.path(), false)).is_err());
        let e = Replay::open(&cfg(&dir.path().join("nope"), false))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("nope"));
    }
}
