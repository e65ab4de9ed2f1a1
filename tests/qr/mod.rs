//! Reading terminal QR codes back in tests: half-block text to a module matrix, and the matrix
//! decoded by `zbarimg` (Debian's zbar-tools), a reader independent of the crate that drew it.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

/// Whether `zbarimg` can be run.
pub fn zbarimg_available() -> bool {
    Command::new("zbarimg")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Turns half-block text back into a square module matrix (`true` for dark). With
/// `ink_is_dark`, a drawn half is a dark module; otherwise a drawn half is a light one.
pub fn parse_half_blocks(drawing: &[String], ink_is_dark: bool) -> Vec<Vec<bool>> {
    let size = drawing[0].chars().count();
    assert!(
        drawing.iter().all(|l| l.chars().count() == size),
        "ragged drawing: {drawing:?}"
    );
    let mut rows = Vec::new();
    for line in drawing {
        let mut top = Vec::new();
        let mut bottom = Vec::new();
        for c in line.chars() {
            let (top_ink, bottom_ink) = match c {
                '█' => (true, true),
                '▀' => (true, false),
                '▄' => (false, true),
                ' ' => (false, false),
                other => panic!("unexpected character {other:?} in the QR drawing"),
            };
            top.push(top_ink == ink_is_dark);
            bottom.push(bottom_ink == ink_is_dark);
        }
        rows.push(top);
        rows.push(bottom);
    }
    // An odd size leaves a half row of padding at the bottom.
    assert!(
        rows.len() == size || rows.len() == size + 1,
        "{} rows for width {size}",
        rows.len()
    );
    rows.truncate(size);
    rows
}

/// Draws `modules` as a grey-map image at `image`, surrounded by dark terminal background beyond
/// the code's own quiet zone, and returns what `zbarimg` reads from it (without the final
/// newline), or why it read nothing.
pub fn decode(modules: &[Vec<bool>], image: &Path) -> Result<String, String> {
    const SCALE: usize = 6;
    const BACKGROUND: usize = 8;
    let side = (modules.len() + 2 * BACKGROUND) * SCALE;
    let mut pixels = vec![0u8; side * side];
    for (y, row) in modules.iter().enumerate() {
        for (x, &dark) in row.iter().enumerate() {
            let value = if dark { 0 } else { 255 };
            for dy in 0..SCALE {
                let at = ((BACKGROUND + y) * SCALE + dy) * side + (BACKGROUND + x) * SCALE;
                pixels[at..at + SCALE].fill(value);
            }
        }
    }
    let mut bytes = format!("P5\n{side} {side}\n255\n").into_bytes();
    bytes.extend_from_slice(&pixels);
    fs::write(image, bytes).unwrap();
    let output = Command::new("zbarimg")
        .args(["--raw", "-q"])
        .arg(image)
        .output()
        .unwrap();
    if !output.status.success() {
        return Err(format!(
            "zbarimg found no code in {}: {}",
            image.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let decoded = String::from_utf8_lossy(&output.stdout);
    Ok(decoded.strip_suffix('\n').unwrap_or(&decoded).to_string())
}
