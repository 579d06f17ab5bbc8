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
            let png = dir.0.join("shot.png");
            let st = std::process::Command::new(&bin)
                .args([
                    "--headless",
                    "--disable-gpu",
                    "--no-sandbox",
                    "--window-size=900,1400",
                ])
                .arg(format!("--screenshot={}", png.display()))
                .arg(format!("file://{}", html_path.display()))
                .output()
                .unwrap();
            assert!(png.exists(), "{}", String::from_utf8_lossy(&st.stderr));
            let bytes = std::fs::read(&png).unwrap();
            // A blank white page compresses to a few KB; plots with colour make it larger.
            assert!(
                bytes.len() > 20_000,
                "screenshot only {} bytes",
                bytes.len()
            );
        }
        None => eprintln!("no Chromium found: checked the SVG structure only"),
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
