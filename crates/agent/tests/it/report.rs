//! The report: tables and the HTML page with its SVG plots.

use stepforge_agent::config::ProviderKind;

use crate::common::*;

#[test]
fn html_report_shows_its_plots() {
    let dir = TempDir::new("report");
    let server = scripted_server(0);
    let mut cfg = config(&server.base, ProviderKind::Openai);
    cfg.tasks_dir = subset(&dir);
    let store = dir.file("r.db");
    run(cfg, &store);
    let s = stepforge_agent::store::Store::open(&store).unwrap();
    let r = stepforge_agent::report::build(&s).unwrap();
    assert_eq!(r.solved, 6);
    let table = stepforge_agent::report::render_table(&r);
    assert!(table.contains("| iteration | stratum | solved |"));
    assert!(table.contains("| norm | 3 | 3 |"));
    let html = stepforge_agent::report::render_html(&r);
    let html_path = dir.0.join("report.html");
    std::fs::write(&html_path, &html).unwrap();
    // Structure: five plots (solved per iteration, per group, pass rate, tokens, cost), every
    // bar chart with one bar per item, no external resources.
    assert_eq!(html.matches("<svg class=\"plot\"").count(), 5);
    assert_eq!(
        html.matches("<rect class=\"bar\"").count(),
        3 * r.iterations.len() + r.per_task.len()
    );
    assert_eq!(html.matches("<polyline class=\"series\"").count(), 3);
    assert!(!html.contains("src=") && !html.contains("href=") && !html.contains("<script"));

    match chromium() {
        Some(bin) => {
            let png = screenshot(&bin, &html_path, &dir.0);
            let shot = Shot::decode(&png);
            // Every plot draws coloured bars or series; text, axes and borders are grey. A
            // blank page, an error page or unrendered SVG has no band of coloured rows; the
            // rendered page has one per plot (they are stacked, 1000x3000 holds them all), each
            // about a data area tall (plots are 300 px high, their data area 180).
            let bands = shot.coloured_bands();
            assert_eq!(
                bands.len(),
                5,
                "bands of coloured rows in the {}x{} screenshot, expected one per plot: {bands:?}",
                shot.width,
                shot.height
            );
            assert!(
                bands.iter().all(|(a, b)| b - a >= 100),
                "a plot rendered shorter than 100 px: {bands:?}"
            );
        }
        None => eprintln!("no Chromium found: checked the SVG structure only"),
    }
}

/// Renders `html` with headless Chromium into a PNG (a fresh profile, no network services,
/// killed after a minute so a wedged browser fails the test instead of hanging it).
fn screenshot(bin: &str, html: &std::path::Path, dir: &std::path::Path) -> Vec<u8> {
    let png = dir.join("shot.png");
    let log = dir.join("chromium.log");
    let mut child = std::process::Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1000,3000",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium-profile").display()
        ))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.join("chromium.err")).unwrap())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("headless Chromium did not finish within 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let err = std::fs::read_to_string(dir.join("chromium.err")).unwrap_or_default();
    assert!(
        status.success() && png.exists(),
        "Chromium failed ({status}): {}",
        err.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    );
    std::fs::read(&png).unwrap()
}

/// A decoded screenshot, 8-bit RGB.
struct Shot {
    width: usize,
    height: usize,
    rgb: Vec<[u8; 3]>,
}

impl Shot {
    fn decode(bytes: &[u8]) -> Shot {
        let mut d = png::Decoder::new(std::io::Cursor::new(bytes));
        d.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut r = d.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        let info = r.next_frame(&mut buf).unwrap();
        let channels = info.color_type.samples();
        let (width, height) = (info.width as usize, info.height as usize);
        let mut rgb = Vec::with_capacity(width * height);
        for y in 0..height {
            let line = &buf[y * info.line_size..][..width * channels];
            for px in line.chunks(channels) {
                rgb.push(match channels {
                    1 | 2 => [px[0]; 3],
                    _ => [px[0], px[1], px[2]],
                });
            }
        }
        Shot { width, height, rgb }
    }

    /// Saturated pixels (channels spread by more than 60): plot colours, not text or grey.
    fn coloured(p: [u8; 3]) -> bool {
        let (max, min) = (p.iter().max().unwrap(), p.iter().min().unwrap());
        max - min > 60
    }

    /// Runs of consecutive rows holding at least 3 coloured pixels, as (first, last) row;
    /// runs closer than 8 rows are one band.
    fn coloured_bands(&self) -> Vec<(usize, usize)> {
        let mut bands: Vec<(usize, usize)> = Vec::new();
        for y in 0..self.height {
            let row = &self.rgb[y * self.width..][..self.width];
            if row.iter().filter(|p| Shot::coloured(**p)).count() < 3 {
                continue;
            }
            match bands.last_mut() {
                Some(b) if y - b.1 <= 8 => b.1 = y,
                _ => bands.push((y, y)),
            }
        }
        bands
    }
}

fn chromium() -> Option<String> {
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "headless_shell",
    ]
    .iter()
    .find_map(|b| {
        std::process::Command::new(b)
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|_| (*b).to_string())
    })
}
