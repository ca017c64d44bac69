//! The status page in headless Chromium: it asks for the token through its own form, shows
//! the live backends healthy, the dead one unhealthy and the client over its limit limited,
//! under its Content-Security-Policy (nothing refused, nothing else allowed), and leaves a
//! screenshot at `target/status-page.png` for a person to look at.

use std::{path::PathBuf, time::Duration};

use serde_json::json;

use crate::{
    helpers::*,
    status::{Scene, TOKEN},
};

/// What the page shows, read from its DOM.
const SHOWN: &str = r#"(() => {
  if (!document.body || !document.body.dataset.renders) return null;
  const rows = (id) => [...document.querySelectorAll('#' + id + ' tbody tr')];
  const badge = (tr) => tr.querySelector('.badge');
  return {
    backends: rows('backends').map((tr) => ({
      url: tr.dataset.url, state: tr.dataset.state, badge: badge(tr).textContent,
      colour: getComputedStyle(badge(tr)).color,
    })),
    clients: rows('clients').map((tr) => ({
      id: tr.dataset.client, limited: tr.dataset.limited, badge: badge(tr).textContent,
      text: tr.textContent, colour: getComputedStyle(badge(tr)).color,
    })),
    instances: rows('instances').length,
    chart: document.querySelectorAll('#chart svg path.rps').length,
    total: document.getElementById('k-total').textContent,
  };
})()"#;

fn screenshot_path() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(&tmp).join("status-page.png")
}

#[actix_web::test]
async fn the_status_page_shows_backends_and_a_limited_client_in_chromium() {
    let scene = Scene::start(&["--rate-limit", "true"]).await;
    scene.drive().await;
    let mut browser = Browser::launch().await;
    browser.open(&scene.gw.admin_url("/")).await;

    // The API answers 401 without the token: the page asks for it in its own form.
    browser
        .wait_for(
            "the token form",
            Duration::from_secs(10),
            "!document.getElementById('login').hidden",
        )
        .await;
    let typed = format!(
        "document.getElementById('token').value = {}; \
         document.getElementById('login-form').requestSubmit(); true",
        json!(TOKEN)
    );
    browser.eval(&typed).await;

    // Refreshes every 2 s: wait until the client scan and two samples are shown.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let shown = loop {
        let shown = browser.eval(SHOWN).await;
        let ready = shown["clients"].as_array().is_some_and(|c| !c.is_empty())
            && shown["chart"] == 1
            && shown["backends"].as_array().is_some_and(|b| b.len() == 3);
        if ready {
            break shown;
        }
        if std::time::Instant::now() > deadline {
            browser.screenshot(&screenshot_path()).await;
            panic!(
                "the page did not show the data within 20 s; shown: {shown}\nmessages: {:#?}",
                browser.messages()
            );
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    };
    let path = screenshot_path();
    browser.screenshot(&path).await;
    println!("status page screenshot: {}", path.display());

    let backend = |url: &str| {
        shown["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["url"] == url)
            .cloned()
            .unwrap_or_else(|| panic!("{url} not shown: {shown}"))
    };
    // Colours are the stylesheet's: the page's style is allowed by its hash.
    let (green, red) = ("rgb(21, 128, 61)", "rgb(200, 30, 30)");
    for live in &scene.live {
        let b = backend(&live.url());
        assert_eq!(
            (b["state"].as_str(), b["badge"].as_str()),
            (Some("healthy"), Some("healthy")),
            "{b}"
        );
        assert_eq!(b["colour"], green, "{b}");
    }
    let d = backend(&scene.dead.url());
    assert_eq!(
        (d["state"].as_str(), d["badge"].as_str()),
        (Some("unhealthy"), Some("unhealthy")),
        "{d}"
    );
    assert_eq!(d["colour"], red, "{d}");

    let greedy = &shown["clients"][0];
    assert_eq!(greedy["id"], "greedy", "{shown}");
    assert_eq!(greedy["limited"], "true", "{greedy}");
    assert_eq!(greedy["badge"], "limited", "{greedy}");
    assert_eq!(greedy["colour"], red, "{greedy}");
    assert!(
        greedy["text"].as_str().unwrap().contains("0 / 3"),
        "tokens shown: {greedy}"
    );
    assert_eq!(shown["instances"], 1, "this instance listed: {shown}");
    assert_eq!(shown["total"], "12", "{shown}");

    // The token stays in the tab: a reload shows the data without asking again.
    let kept = browser
        .eval("sessionStorage.getItem('tollgate.admin-token')")
        .await;
    assert_eq!(kept, TOKEN);
    // A mark on the old document tells it from the new one.
    browser.eval("window.beforeReload = true").await;
    browser.call("Page.reload", json!({})).await;
    browser
        .wait_for(
            "the data after a reload",
            Duration::from_secs(10),
            "!window.beforeReload && document.readyState === 'complete' && \
             document.body.dataset.renders && document.getElementById('login').hidden",
        )
        .await;

    // Nothing was refused by the policy, and nothing failed in the script.
    let messages = browser.messages();
    let bad: Vec<&String> = messages
        .iter()
        .filter(|m| {
            m.contains("Content Security Policy")
                || m.starts_with("exception")
                || m.starts_with("console error")
        })
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
    // And the policy is in force: a style the page does not carry is not applied.
    let foreign = browser
        .eval(
            "const s = document.createElement('style'); s.textContent = 'body { margin-left: 77px }'; \
             document.head.append(s); getComputedStyle(document.body).marginLeft",
        )
        .await;
    assert_eq!(foreign, "0px");
}
