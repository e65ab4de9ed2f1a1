//! QR codes for terminals: two modules per character cell with half blocks, so a code for an
//! otpauth URI fits an 80-column terminal.

use qrcode::{Color, EcLevel, QrCode};
use zeroize::Zeroizing;

/// How to draw the code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QrStyle {
    /// Unicode half blocks drawn in the terminal's text colour: light modules are blocks, so it
    /// reads right on the usual light-on-dark terminal.
    Utf8,
    /// Half blocks with explicit ANSI colours (black on white): reads right on any terminal theme.
    Ansi,
}

/// Renders `text` as a QR code, one `\n`-terminated line per two module rows, quiet zone
/// included, at most `MAX_COLUMNS` wide. Errors if the text does not fit.
pub fn render(text: &str, style: QrStyle) -> Result<Zeroizing<String>, QrError> {
    let code = fitting_code(text)?;
    let width = code.width();
    let colors = code.to_colors();
    let size = width + 2 * QUIET_ZONE;
    // The drawing encodes the secret: sized up front (at most 3 bytes a cell, plus the colour
    // codes and newline of each line) so that no reallocation leaves an unwiped copy behind.
    let lines = size.div_ceil(2);
    let mut out = Zeroizing::new(String::with_capacity(lines * (size * 3 + 16)));
    let dark = |x: usize, y: usize| {
        x >= QUIET_ZONE
            && y >= QUIET_ZONE
            && x < QUIET_ZONE + width
            && y < QUIET_ZONE + width
            && colors[(y - QUIET_ZONE) * width + (x - QUIET_ZONE)] == Color::Dark
    };
    for y in (0..size).step_by(2) {
        if style == QrStyle::Ansi {
            out.push_str("\x1b[30;107m");
        }
        for x in 0..size {
            let top = dark(x, y);
            let bottom = y + 1 < size && dark(x, y + 1);
            // Which half is "ink" depends on the style: light modules in Utf8, dark ones in Ansi.
            let (top_ink, bottom_ink) = match style {
                QrStyle::Utf8 => (!top, y + 1 < size && !bottom),
                QrStyle::Ansi => (top, bottom),
            };
            out.push(match (top_ink, bottom_ink) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        if style == QrStyle::Ansi {
            out.push_str("\x1b[0m");
        }
        out.push('\n');
    }
    Ok(out)
}

/// The module matrix with its quiet zone, `true` for dark: for tests that decode the code with an
/// independent reader.
pub fn modules(text: &str) -> Result<Vec<Vec<bool>>, QrError> {
    let code = fitting_code(text)?;
    let width = code.width();
    let colors = code.to_colors();
    let size = width + 2 * QUIET_ZONE;
    Ok((0..size)
        .map(|y| {
            (0..size)
                .map(|x| {
                    x >= QUIET_ZONE
                        && y >= QUIET_ZONE
                        && x < QUIET_ZONE + width
                        && y < QUIET_ZONE + width
                        && colors[(y - QUIET_ZONE) * width + (x - QUIET_ZONE)] == Color::Dark
                })
                .collect()
        })
        .collect())
}

/// Why a text could not be drawn.
#[derive(Debug)]
pub struct QrError(String);

impl std::fmt::Display for QrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QrError {}

/// Medium error correction survives a blurry phone camera; low is the fallback that still fits.
fn fitting_code(text: &str) -> Result<QrCode, QrError> {
    for level in [EcLevel::M, EcLevel::L] {
        if let Ok(code) = QrCode::with_error_correction_level(text.as_bytes(), level) {
            if code.width() + 2 * QUIET_ZONE <= MAX_COLUMNS {
                return Ok(code);
            }
        }
    }
    Err(QrError(format!(
        "the QR code would be wider than {MAX_COLUMNS} columns (a shorter issuer or user name \
         helps); use --qr none and type the key"
    )))
}

/// The terminal width the code must fit.
pub const MAX_COLUMNS: usize = 80;

/// The standard asks for four modules; two are enough for phone scanners and save width.
const QUIET_ZONE: usize = 2;

#[cfg(test)]
mod tests {
    use super::*;

    const URI: &str = "otpauth://totp/host.example.org:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=host.example.org&algorithm=SHA1&digits=6&period=30";

    #[test]
    fn an_otpauth_code_fits_80_columns() {
        for style in [QrStyle::Utf8, QrStyle::Ansi] {
            let drawn = render(URI, style).unwrap();
            for line in drawn.lines() {
                let visible = line.replace("\x1b[30;107m", "").replace("\x1b[0m", "");
                assert!(
                    visible.chars().count() <= 80,
                    "{} columns",
                    visible.chars().count()
                );
            }
        }
    }

    #[test]
    fn rendering_matches_the_module_matrix() {
        let drawn = render(URI, QrStyle::Ansi).unwrap();
        let matrix = modules(URI).unwrap();
        let first = drawn
            .lines()
            .nth(1)
            .unwrap()
            .replace("\x1b[30;107m", "")
            .replace("\x1b[0m", "");
        for (x, c) in first.chars().enumerate() {
            let expected = match (matrix[2][x], matrix[3][x]) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            };
            assert_eq!(c, expected, "column {x}");
        }
    }
}
