//! Labelled face sets for `fer-edge eval`: which images, with which labels.
//!
//! In: a path. Out: a [`Dataset`]: one [`Sample`] per labelled image (its
//! true expression, valence/arousal when the set has them, and where its
//! pixels are), plus the rows that could not be used, each with its reason.
//! Three layouts are read:
//! - **class folders**: `<root>/<label>/*.{jpg,jpeg,png}`, labels by our
//!   names or their usual synonyms (`angry`, `surprised`, `scared`, ...);
//!   an unknown folder name is an error listing the accepted ones;
//! - **the FER2013 CSV** (`emotion,pixels,Usage`; codes 0-6 angry, disgust,
//!   fear, happy, sad, surprise, neutral; 48x48 grey pixels), filtered by
//!   `Usage` (`--usage PublicTest`);
//! - **the AffectNet CSV** (`subDirectory_filePath, face_x, face_y,
//!   face_width, face_height, facial_landmarks, expression, valence,
//!   arousal`, as `tools/emotion_gcn` reads it; codes 0-6 in our order,
//!   others skipped; valence/arousal of -2 mean "not annotated"), images
//!   under `--images` (default: the CSV's folder).
//!
//! Pixels are not decoded here: files are read when they are scored.

use std::path::{Path, PathBuf};

use crate::frame::{BBox, Expression};

/// Where a sample's pixels are.
#[derive(Debug, Clone, PartialEq)]
pub enum Pixels {
    /// An image file.
    File(PathBuf),
    /// Grey pixels carried in the set itself (FER2013's CSV), row-major.
    Gray {
        width: u32,
        height: u32,
        data: Vec<u8>,
    },
}

/// One labelled image.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// How reports name it: a path, or `fer2013.csv:row`.
    pub id: String,
    pub truth: Expression,
    /// Labelled valence and arousal, when the set has them.
    pub va: Option<[f32; 2]>,
    pub pixels: Pixels,
    /// The labelled face box, when the set gives one (AffectNet): the crop
    /// of `--whole-image`, and the face to score when several are found.
    pub face: Option<BBox>,
}

/// A labelled set, read.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// `folders`, `fer2013-csv` or `affectnet-csv`.
    pub format: &'static str,
    pub samples: Vec<Sample>,
    /// Rows or files left out, with the reason (counted and named in the
    /// report; never fatal).
    pub skipped: Vec<String>,
}

/// Why a set cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{0}: no such file or folder")]
    Missing(PathBuf),
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Read(#[from] crate::fileio::ReadError),
    #[error("{path}: folder {folder:?} is not an expression; accepted folder names: {accepted}")]
    UnknownLabel {
        path: PathBuf,
        folder: String,
        accepted: String,
    },
    #[error("{path}: not a CSV this command reads (header {header:?}); expected FER2013's `emotion,pixels,Usage` or AffectNet's `subDirectory_filePath,...,expression,valence,arousal`")]
    UnknownCsv { path: PathBuf, header: String },
    #[error("{path}: no labelled image{hint}")]
    Empty { path: PathBuf, hint: String },
    #[error("--usage {usage} picks rows of a FER2013 CSV by its Usage column; {path} is {what}, which has none: leave --usage out, or give fer2013.csv")]
    UsageNotApplicable {
        path: PathBuf,
        usage: String,
        what: &'static str,
    },
}

/// Folder names of classes outside the seven, left out with a note.
pub const IGNORED_LABELS: &[&str] = &["contempt", "contemptuous"];

/// Folder names accepted as labels, with the class each means.
pub const LABEL_NAMES: &[(&str, Expression)] = &[
    ("neutral", Expression::Neutral),
    ("happy", Expression::Happy),
    ("happiness", Expression::Happy),
    ("sad", Expression::Sad),
    ("sadness", Expression::Sad),
    ("surprise", Expression::Surprise),
    ("surprised", Expression::Surprise),
    ("fear", Expression::Fear),
    ("fearful", Expression::Fear),
    ("scared", Expression::Fear),
    ("disgust", Expression::Disgust),
    ("disgusted", Expression::Disgust),
    ("anger", Expression::Anger),
    ("angry", Expression::Anger),
];

/// A folder name as a label (case-insensitive).
pub fn parse_label(name: &str) -> Option<Expression> {
    let l = name.trim().to_ascii_lowercase();
    LABEL_NAMES.iter().find(|(n, _)| *n == l).map(|&(_, e)| e)
}

/// FER2013's codes 0-6.
const FER_CODES: [Expression; 7] = [
    Expression::Anger,
    Expression::Disgust,
    Expression::Fear,
    Expression::Happy,
    Expression::Sad,
    Expression::Surprise,
    Expression::Neutral,
];

/// Reads a labelled set. `usage` filters FER2013's CSV (`PublicTest`,
/// `PrivateTest`, `Training`; `None` keeps every row); `images` is the
/// AffectNet image root. `limit` keeps the first N samples (0: all).
pub fn open(
    path: &Path,
    usage: Option<&str>,
    images: Option<&Path>,
    limit: usize,
) -> Result<Dataset, DatasetError> {
    let meta = std::fs::metadata(path).map_err(|_| DatasetError::Missing(path.to_path_buf()))?;
    let mut set = if meta.is_dir() {
        folders(path)?
    } else {
        let text = crate::fileio::read_bounded(path, CSV_LIMIT, "a labelled CSV", "")?;
        let text = String::from_utf8_lossy(&text);
        let header = text
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches('\u{feff}');
        let cols: Vec<String> = split_csv(header)
            .iter()
            .map(|c| c.trim().to_ascii_lowercase())
            .collect();
        if cols.iter().any(|c| c == "pixels") && cols.iter().any(|c| c == "emotion") {
            fer_csv(path, &text, &cols, usage)
        } else if cols.iter().any(|c| c == "subdirectory_filepath") {
            let root = images
                .map(Path::to_path_buf)
                .unwrap_or_else(|| path.parent().unwrap_or(Path::new(".")).to_path_buf());
            affectnet_csv(path, &text, &cols, &root)
        } else {
            return Err(DatasetError::UnknownCsv {
                path: path.to_path_buf(),
                header: header.chars().take(120).collect(),
            });
        }
    };
    if let (Some(u), false) = (usage, set.format == "fer2013-csv") {
        return Err(DatasetError::UsageNotApplicable {
            path: path.to_path_buf(),
            usage: u.to_string(),
            what: match set.format {
                "folders" => "a folder of class folders",
                _ => "an AffectNet CSV",
            },
        });
    }
    if limit > 0 && set.samples.len() > limit {
        set.samples.truncate(limit);
    }
    if set.samples.is_empty() {
        let hint = match (set.format, usage) {
            ("fer2013-csv", Some(u)) => {
                format!(" with Usage {u:?} (Usage is PublicTest, PrivateTest or Training)")
            }
            ("folders", _) => " (expected <root>/<label>/*.jpg|png)".into(),
            _ => String::new(),
        };
        // Every row was refused: say why, or the user has nothing to fix.
        let hint = match set.skipped.len() {
            0 => hint,
            n => format!(
                "{hint}: all {n} rows or files were skipped, first because {}",
                set.skipped[..n.min(3)].join("; ")
            ),
        };
        return Err(DatasetError::Empty {
            path: path.to_path_buf(),
            hint,
        });
    }
    Ok(set)
}

/// Largest CSV read (FER2013's full CSV is ~300 MB).
const CSV_LIMIT: u64 = 1 << 30;

fn folders(root: &Path) -> Result<Dataset, DatasetError> {
    let io = |source| DatasetError::Io {
        path: root.to_path_buf(),
        source,
    };
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut set = Dataset {
        format: "folders",
        ..Dataset::default()
    };
    for dir in dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if IGNORED_LABELS.contains(&name.to_ascii_lowercase().as_str()) {
            // AffectNet's eighth class: not one of the seven the models read.
            set.skipped.push(format!(
                "{}: folder {name:?} left out (not one of the seven expressions fer-edge reads)",
                dir.display()
            ));
            continue;
        }
        let truth = parse_label(&name).ok_or_else(|| DatasetError::UnknownLabel {
            path: root.to_path_buf(),
            folder: name.clone(),
            accepted: LABEL_NAMES
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        let mut sink = Vec::new();
        let (files, _) = crate::imageio::expand_inputs(std::slice::from_ref(&dir), &mut sink);
        if !sink.is_empty() {
            set.skipped
                .push(String::from_utf8_lossy(&sink).trim().to_string());
        }
        for f in files {
            set.samples.push(Sample {
                id: f.display().to_string(),
                truth,
                va: None,
                pixels: Pixels::File(f),
                face: None,
            });
        }
    }
    Ok(set)
}

fn column(cols: &[String], name: &str) -> Option<usize> {
    cols.iter().position(|c| c == name)
}

fn fer_csv(path: &Path, text: &str, cols: &[String], usage: Option<&str>) -> Dataset {
    let (ie, ip) = (
        column(cols, "emotion").unwrap_or(0),
        column(cols, "pixels").unwrap_or(1),
    );
    let iu = column(cols, "usage");
    let mut set = Dataset {
        format: "fer2013-csv",
        ..Dataset::default()
    };
    let name = path.display();
    for (row, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let f = split_csv(line);
        if let (Some(want), Some(iu)) = (usage, iu) {
            if !f
                .get(iu)
                .is_some_and(|u| u.trim().eq_ignore_ascii_case(want))
            {
                continue;
            }
        }
        let id = format!("{name}:{}", row + 1);
        let code = f.get(ie).and_then(|c| c.trim().parse::<usize>().ok());
        let Some(truth) = code.and_then(|c| FER_CODES.get(c).copied()) else {
            set.skipped.push(format!("{id}: emotion is not a code 0-6"));
            continue;
        };
        let px: Result<Vec<u8>, _> = f
            .get(ip)
            .map(|p| p.split_ascii_whitespace().map(str::parse::<u8>).collect())
            .unwrap_or(Ok(Vec::new()));
        let data = match px {
            Ok(d) if d.len() == 48 * 48 => d,
            Ok(d) => {
                set.skipped
                    .push(format!("{id}: {} pixels, expected 2304 (48x48)", d.len()));
                continue;
            }
            Err(_) => {
                set.skipped
                    .push(format!("{id}: pixels are not numbers 0-255"));
                continue;
            }
        };
        set.samples.push(Sample {
            id,
            truth,
            va: None,
            pixels: Pixels::Gray {
                width: 48,
                height: 48,
                data,
            },
            face: None,
        });
    }
    set
}

fn affectnet_csv(path: &Path, text: &str, cols: &[String], root: &Path) -> Dataset {
    let need = [
        "subdirectory_filepath",
        "face_x",
        "face_y",
        "face_width",
        "face_height",
        "expression",
        "valence",
        "arousal",
    ];
    let ix: Vec<Option<usize>> = need.iter().map(|n| column(cols, n)).collect();
    let mut set = Dataset {
        format: "affectnet-csv",
        ..Dataset::default()
    };
    let name = path.display();
    if let Some(missing) = need.iter().zip(&ix).find(|(_, i)| i.is_none()) {
        set.skipped
            .push(format!("{name}: no column {:?}", missing.0));
        return set;
    }
    let ix: Vec<usize> = ix.into_iter().flatten().collect();
    for (row, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let f = split_csv(line);
        let get = |k: usize| f.get(ix[k]).map(|s| s.trim()).unwrap_or("");
        // The row and the image it names.
        let id = format!("{name}:{} ({})", row + 1, get(0));
        let num = |k: usize| get(k).parse::<f32>().ok();
        let Some(code) = get(5).parse::<usize>().ok() else {
            set.skipped
                .push(format!("{id}: expression is not a number"));
            continue;
        };
        // Codes 7+ (contempt, none, uncertain, no face) are not ours.
        let Some(&truth) = Expression::ALL.get(code) else {
            continue;
        };
        let va = match (num(6), num(7)) {
            (Some(v), Some(a)) if (-1.0..=1.0).contains(&v) && (-1.0..=1.0).contains(&a) => {
                Some([v, a])
            }
            _ => None,
        };
        let face = match (num(1), num(2), num(3), num(4)) {
            (Some(x), Some(y), Some(w), Some(h)) if w > 0.0 && h > 0.0 => Some(BBox { x, y, w, h }),
            _ => None,
        };
        set.samples.push(Sample {
            id,
            truth,
            va,
            pixels: Pixels::File(root.join(get(0))),
            face,
        });
    }
    set
}

/// Splits one CSV line (RFC 4180 quoting: `"a,b"` and `""` inside quotes).
pub fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_split_with_quotes() {
        assert_eq!(split_csv("a,b,c"), ["a", "b", "c"]);
        assert_eq!(split_csv("a,\"1;2,3\",c"), ["a", "1;2,3", "c"]);
        assert_eq!(split_csv("\"say \"\"hi\"\"\",x"), ["say \"hi\"", "x"]);
        assert_eq!(split_csv(""), [""]);
    }

    #[test]
    fn fer2013_csv_rows_are_filtered_by_usage_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fer2013.csv");
        let px = vec!["7"; 2304].join(" ");
        let text = format!(
            "emotion,pixels,Usage\n3,{px},PublicTest\n0,{px},Training\n9,{px},PublicTest\n6,1 2 3,PublicTest\n6,{px},publictest\n"
        );
        std::fs::write(&p, text).unwrap();
        let set = open(&p, Some("PublicTest"), None, 0).unwrap();
        assert_eq!(set.format, "fer2013-csv");
        let truths: Vec<_> = set.samples.iter().map(|s| s.truth).collect();
        assert_eq!(truths, [Expression::Happy, Expression::Neutral]);
        assert_eq!(set.skipped.len(), 2, "{:?}", set.skipped);
        assert!(set.skipped[0].contains("code 0-6"));
        assert!(set.skipped[1].contains("3 pixels"));
        match &set.samples[0].pixels {
            Pixels::Gray { data, .. } => assert!(data.iter().all(|&v| v == 7)),
            other => panic!("{other:?}"),
        }
        let err = open(&p, Some("PrivateTest"), None, 0).unwrap_err();
        assert!(err.to_string().contains("PrivateTest"), "{err}");
    }

    #[test]
    fn affectnet_rows_keep_labels_boxes_and_annotated_va() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("val.csv");
        std::fs::write(
            &p,
            "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n\
             1/a.jpg,10,20,100,110,\"1;2;3\",1,0.8,0.2\n\
             1/b.jpg,10,20,100,110,\"1;2;3\",8,0.1,0.1\n\
             1/c.jpg,10,20,100,110,\"1;2;3\",6,-2,-2\n",
        )
        .unwrap();
        let set = open(&p, None, Some(Path::new("/imgs")), 0).unwrap();
        assert_eq!(set.format, "affectnet-csv");
        assert_eq!(set.samples.len(), 2);
        assert_eq!(set.samples[0].truth, Expression::Happy);
        assert_eq!(set.samples[0].va, Some([0.8, 0.2]));
        assert_eq!(set.samples[0].pixels, Pixels::File("/imgs/1/a.jpg".into()));
        assert_eq!(set.samples[0].face.unwrap().w, 100.0);
        assert_eq!(set.samples[1].truth, Expression::Anger);
        assert_eq!(set.samples[1].va, None);
    }

    #[test]
    fn folders_map_synonyms_and_refuse_unknown_names() {
        let dir = tempfile::tempdir().unwrap();
        for (d, f) in [
            ("angry", "1.jpg"),
            ("Surprised", "2.png"),
            ("scared", "3.jpg"),
        ] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
            std::fs::write(dir.path().join(d).join(f), b"x").unwrap();
        }
        let set = open(dir.path(), None, None, 0).unwrap();
        let truths: Vec<_> = set.samples.iter().map(|s| s.truth).collect();
        assert_eq!(
            truths,
            [Expression::Surprise, Expression::Anger, Expression::Fear]
        );
        // AffectNet's eighth class is left out with a note, not an error.
        std::fs::create_dir(dir.path().join("contempt")).unwrap();
        std::fs::write(dir.path().join("contempt/4.jpg"), b"x").unwrap();
        let set = open(dir.path(), None, None, 0).unwrap();
        assert_eq!(set.samples.len(), 3);
        assert!(
            set.skipped
                .iter()
                .any(|s| s.contains("\"contempt\" left out")),
            "{:?}",
            set.skipped
        );
        // --usage means nothing to folders: said, not ignored.
        let err = open(dir.path(), Some("PublicTest"), None, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--usage") && err.contains("folder"), "{err}");
        std::fs::create_dir(dir.path().join("bored")).unwrap();
        let err = open(dir.path(), None, None, 0).unwrap_err().to_string();
        assert!(err.contains("\"bored\"") && err.contains("angry"), "{err}");
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            open(empty.path(), None, None, 0),
            Err(DatasetError::Empty { .. })
        ));
        let csv = empty.path().join("x.csv");
        std::fs::write(&csv, "a,b\n1,2\n").unwrap();
        assert!(matches!(
            open(&csv, None, None, 0),
            Err(DatasetError::UnknownCsv { .. })
        ));
    }
}
