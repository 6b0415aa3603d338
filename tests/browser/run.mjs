// The editors' web page in headless Chromium, as a person would use it.
//
//   node tests/browser/run.mjs BASE_URL
//
// Started by tests/it/browser.rs, which serves the sample corpus with the real model
// and a write key, and passes what to expect in the JSON file named by
// STORYDEX_BROWSER_FIXTURE: { key, screenshots, atlas, draft, repeats }. Assertions are
// on what the pages show (text, links, badges), not on markup details. Screenshots of
// every page at 1280x800 and 390x844 go to the fixture's `screenshots` folder.
// Exits 0 when every step passed.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const base = process.argv[2];
if (!base) {
  console.error("usage: node tests/browser/run.mjs BASE_URL");
  process.exit(2);
}
const fixture = JSON.parse(readFileSync(process.env.STORYDEX_BROWSER_FIXTURE, "utf8"));
const shots = fixture.screenshots;
mkdirSync(shots, { recursive: true });

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

// A digest whose headlines, summaries and links try to run script. Published through
// the page, then shown on every page that can show it.
const XSS_HEADLINE = "<script>alert(1)</script>安全测试标题";
const XSS_SECOND = '"><img src=x onerror=alert(4)>第二条安全测试';
const XSS_DRAFT = `---
title: "2026.01.08.08 <script>alert('title')</script>安全测试"
date: 2026-01-08T08:00:00+08:00
categories: ["<img src=x onerror=alert('category')>"]
---

1.  [${XSS_HEADLINE}](javascript:alert(1))

    摘要里有 "><img src=x onerror=alert(2)> 和 <script>alert(3)</script>，一个[脚本链接](javascript:alert(5))，一个[正常链接](https://example.org/ok)。

2.  [${XSS_SECOND}](https://example.org/two)

    第二条摘要 <b onmouseover=alert(6)>粗体</b> ![图](javascript:alert(7))
`;

const profile = mkdtempSync(join(tmpdir(), "storydex-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: DESKTOP,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  timeout: 60_000,
});
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(30_000);

// Anything a page's own code (or injected code) does that it should not.
const dialogs = [];
const scriptErrors = [];
page.on("dialog", async (dialog) => {
  dialogs.push(`${dialog.type()}: ${dialog.message()}`);
  await dialog.dismiss();
});
page.on("pageerror", (error) => scriptErrors.push(String(error)));
page.on("console", (message) => {
  if (message.type() === "error" && /Content Security Policy|Refused to/i.test(message.text())) {
    scriptErrors.push(message.text());
  }
});

const results = [];
async function step(name, body) {
  const started = Date.now();
  try {
    await body();
    results.push(true);
    console.log(`ok    ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    results.push(false);
    console.log(`FAIL  ${name}\n${error.stack ?? error}`);
    const file = join(shots, `FAILED-${results.length}.png`);
    await page.screenshot({ path: file, fullPage: true }).catch(() => {});
    console.log(`      page: ${page.url()}, screenshot: ${file}`);
  }
}

/** Submits a form by clicking `button`; the response of the page it leads to. */
async function submit(button) {
  const [response] = await Promise.all([page.waitForNavigation(), button.click()]);
  return response;
}

async function go(path) {
  const response = await page.goto(new URL(path, base).href);
  return response;
}

/** The visible text of the page's main part. */
async function shown(locator = page.locator("main")) {
  return locator.innerText();
}

/** Full-page screenshots at both sizes; on the phone nothing may be wider than it. */
async function screenshots(name) {
  for (const size of [DESKTOP, PHONE]) {
    await page.setViewportSize(size);
    await page.screenshot({ path: join(shots, `${name}-${size.width}.png`), fullPage: true });
    if (size === PHONE) {
      const wide = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(wide <= PHONE.width, `${name} is ${wide}px wide on a ${PHONE.width}px phone`);
    }
  }
  await page.setViewportSize(DESKTOP);
}

/** Result headlines on the search page, in order. */
async function hitHeadlines() {
  return page.locator("ol.hits > li .headline").allInnerTexts();
}

async function search(query) {
  await go("/");
  await page.getByRole("searchbox").fill(query);
  const response = await submit(page.getByRole("button", { name: "搜索 Search" }));
  assert.equal(response.status(), 200);
  const headlines = await hitHeadlines();
  assert.ok(headlines.length > 0, `no results for ${query}`);
  return headlines;
}

/** Nothing on the page runs script or links to it; stored markup shows as text. */
async function assertHarmless(where) {
  assert.deepEqual(dialogs, [], `a dialog opened on ${where}`);
  assert.deepEqual(scriptErrors, [], `script errors or blocked scripts on ${where}`);
  const found = await page.evaluate(() => ({
    inlineScripts: [...document.scripts].filter((s) => !s.src.endsWith("/static/app.js")).length,
    handlers: [...document.querySelectorAll("*")].filter((e) =>
      [...e.attributes].some((a) => a.name.toLowerCase().startsWith("on")),
    ).length,
    scriptLinks: [...document.querySelectorAll("[href], [src], [action], [formaction]")].filter(
      (e) =>
        ["href", "src", "action", "formaction"].some((name) =>
          /^\s*(javascript|data|vbscript):/i.test(e.getAttribute(name) ?? ""),
        ),
    ).length,
    images: [...document.images].filter((i) => i.getAttribute("src") === "x").length,
  }));
  assert.deepEqual(
    found,
    { inlineScripts: 0, handlers: 0, scriptLinks: 0, images: 0 },
    `markup from the digest became live on ${where}`,
  );
}

try {
  await step("a Chinese query finds the Atlas story in both digests, its words marked", async () => {
    const headlines = await search("波士顿动力人形机器人");
    const top = headlines.slice(0, 3);
    assert.ok(top.includes(fixture.atlas.title), `Atlas not in the top 3: ${top.join(" | ")}`);
    assert.ok(top.includes(fixture.atlas.repeat_title), `repeat not in the top 3: ${top.join(" | ")}`);
    const hit = page.locator("ol.hits > li", { hasText: fixture.atlas.title });
    const text = await hit.innerText();
    assert.ok(text.includes(fixture.atlas.digest), text);
    assert.ok(text.includes("2026-01-06 12:00"), text);
    const source = hit.getByRole("link", { name: /原文/ });
    assert.equal(await source.getAttribute("href"), fixture.atlas.url);
    const marked = await hit.locator("mark").allInnerTexts();
    assert.ok(marked.some((m) => m.includes("人形机器人")), `marked: ${marked}`);
    await screenshots("search");
    await page.screenshot({ path: join(shots, "search-1280-viewport.png") });
  });

  await step("an English query finds the Atlas story first", async () => {
    const headlines = await search("Boston Dynamics Atlas robot in car factories");
    assert.ok(headlines[0].includes("Atlas"), headlines.join(" | "));
    const marked = await page.locator("ol.hits > li").first().locator("mark").allInnerTexts();
    assert.ok(marked.some((m) => /Boston|Atlas/.test(m)), `marked: ${marked}`);
  });

  await step("opening a result shows the story, its repeat and its similar stories", async () => {
    await search("波士顿动力人形机器人");
    await submit(page.getByRole("link", { name: fixture.atlas.title }).first());
    assert.ok(page.url().endsWith(`/stories/${fixture.atlas.id}`), page.url());
    assert.equal(await page.getByRole("heading", { level: 1 }).innerText(), fixture.atlas.title);
    const article = await shown(page.locator("article"));
    assert.ok(article.includes("现代汽车工厂"), article);
    assert.ok(!article.includes("**"), `Markdown not rendered: ${article}`);
    assert.ok(article.includes(fixture.atlas.digest), article);

    const cluster = await shown(page.locator("section", { has: page.getByRole("heading", { name: /重复报道/ }) }));
    for (const expected of [fixture.atlas.repeat_title, fixture.atlas.digest, fixture.atlas.repeat_digest]) {
      assert.ok(cluster.includes(expected), `cluster lacks ${expected}: ${cluster}`);
    }
    const similar = page.locator("section", { has: page.getByRole("heading", { name: /相关报道/ }) });
    const similarText = await shown(similar);
    assert.ok(similarText.includes(fixture.atlas.repeat_title), similarText);
    assert.ok(!similarText.includes(fixture.atlas.digest), "other digests only by default");
    await screenshots("story");

    // Following a similar story opens its page.
    await submit(similar.getByRole("link", { name: fixture.atlas.repeat_title }));
    assert.equal(await page.getByRole("heading", { level: 1 }).innerText(), fixture.atlas.repeat_title);
  });

  await step("the duplicates page shows the Atlas cluster with both digests", async () => {
    await go("/");
    await submit(page.getByRole("link", { name: /重复报道/ }));
    assert.equal(await page.getByLabel(/Since/).inputValue(), "2026-01-01");
    assert.equal(await page.getByLabel(/Until/).inputValue(), "2026-01-07");
    const atlas = page.locator("section.cluster", { hasText: fixture.atlas.title });
    assert.equal(await atlas.count(), 1, "one Atlas cluster");
    const text = await atlas.innerText();
    for (const expected of [
      fixture.atlas.repeat_title,
      fixture.atlas.digest,
      fixture.atlas.repeat_digest,
      "2026-01-06 12:00",
      "2026-01-07 00:00",
    ]) {
      assert.ok(text.includes(expected), `cluster lacks ${expected}: ${text}`);
    }
    await screenshots("duplicates");

    // All dates: the range can be cleared.
    await page.getByLabel(/Since/).fill("");
    await page.getByLabel(/Until/).fill("");
    await submit(page.getByRole("button", { name: /显示/ }));
    assert.ok((await shown()).includes("全部日期"), "all dates");
  });

  await step("a pasted draft of digest 001 shows its seven repeats covered by their originals", async () => {
    await go("/");
    await submit(page.getByRole("link", { name: /检查草稿/ }));
    await screenshots("check-empty");
    await page.getByLabel(/草稿 Draft/).fill(fixture.draft);
    const response = await submit(page.getByRole("button", { name: "检查 Check" }));
    assert.equal(response.status(), 200);
    const items = page.locator("ol.checked-items > li");
    const total = await items.count();
    assert.equal(total, 9, "digest 001 has nine items");
    for (const repeat of fixture.repeats) {
      const item = items.filter({ hasText: repeat.draft_title });
      assert.equal(await item.count(), 1, repeat.draft_title);
      const text = await item.innerText();
      assert.ok(text.includes("已报道 covered"), `${repeat.draft_title} not covered: ${text}`);
      assert.ok(text.includes(repeat.original_title), `${repeat.draft_title} lacks its original: ${text}`);
      assert.ok(text.includes(repeat.original_digest), text);
      assert.ok(text.includes("2026-01-06 12:00"), text);
      assert.match(text, /\b0\.\d{3}\b|\b1\.000\b/, "a score");
      // The reason: the links were rewritten, so the match is by text alone.
      assert.ok(text.includes("other link") && text.includes("days apart"), `no reason: ${text}`);
    }
    assert.equal(await items.filter({ hasText: "已报道 covered" }).count(), fixture.repeats.length);
    // The others are new, or put in front of the editor to check (a near miss).
    const fresh = await items.filter({ hasText: "新 new" }).count();
    const toCheck = await items.filter({ hasText: "待确认 check" }).count();
    assert.equal(fresh + toCheck, total - fixture.repeats.length, `${fresh} new, ${toCheck} to check`);
    const summary = await shown(page.locator("section.checked .summary"));
    assert.ok(summary.includes(`${fixture.repeats.length} 已报道过`), summary);
    await screenshots("check");
  });

  await step("a picked file is read into the draft box", async () => {
    await go("/check");
    await page.locator('input[type="file"]').setInputFiles({
      name: "draft.md",
      mimeType: "text/markdown",
      buffer: Buffer.from(XSS_DRAFT, "utf8"),
    });
    await page.waitForFunction(() => document.querySelector("textarea#draft").value.length > 0);
    assert.equal(await page.getByLabel(/草稿 Draft/).inputValue(), XSS_DRAFT);
  });

  await step("publishing needs the key: refused without it and with a wrong one, stored with it", async () => {
    await go("/check");
    await page.getByLabel(/草稿 Draft/).fill(XSS_DRAFT);
    await submit(page.getByRole("button", { name: "检查 Check" }));
    await assertHarmless("the draft check");
    const items = await shown(page.locator("ol.checked-items"));
    assert.ok(items.includes(XSS_HEADLINE), items);

    let response = await submit(page.getByRole("button", { name: /发布 Publish/ }));
    assert.equal(response.status(), 401);
    let error = await page.getByRole("alert").innerText();
    assert.ok(error.includes("write key"), error);

    await page.getByLabel(/写入密钥/).fill("not-the-key");
    response = await submit(page.getByRole("button", { name: /发布 Publish/ }));
    assert.equal(response.status(), 401);
    error = await page.getByRole("alert").innerText();
    assert.ok(error.includes("wrong"), error);
    await screenshots("publish-refused");

    await go("/digests");
    assert.ok(!(await shown()).includes("安全测试"), "a refused publish stored nothing");

    await go("/check");
    await page.getByLabel(/草稿 Draft/).fill(XSS_DRAFT);
    await submit(page.getByRole("button", { name: "检查 Check" }));
    await page.getByLabel(/写入密钥/).fill(fixture.key);
    response = await submit(page.getByRole("button", { name: /发布 Publish/ }));
    assert.equal(response.status(), 201);
    const done = await page.getByRole("status").innerText();
    assert.ok(done.includes("2 new"), done);
    await assertHarmless("the published page");
    await screenshots("published");
    assert.ok(!page.url().includes(fixture.key), "the key never goes into a URL");
  });

  await step("the script-laden digest renders as harmless text everywhere", async () => {
    await go("/digests");
    await assertHarmless("the digests list");
    const link = page.getByRole("link", { name: /安全测试/ });
    assert.ok((await link.innerText()).includes("<script>alert('title')</script>"));
    await submit(link);
    await assertHarmless("the digest page");
    const digest = await shown();
    assert.ok(digest.includes(XSS_HEADLINE) && digest.includes(XSS_SECOND), digest);

    await submit(page.getByRole("link", { name: XSS_HEADLINE }));
    await assertHarmless("the story page");
    assert.equal(await page.getByRole("heading", { level: 1 }).innerText(), XSS_HEADLINE);
    const body = await shown(page.locator("article"));
    assert.ok(body.includes('"><img src=x onerror=alert(2)>'), body);
    assert.ok(body.includes("<script>alert(3)</script>"), body);
    assert.ok(body.includes("脚本链接"), "an unsafe link keeps its text");
    assert.equal(
      await page.locator("article").getByRole("link", { name: "正常链接" }).getAttribute("href"),
      "https://example.org/ok",
    );
    assert.ok(body.includes("javascript:alert(1"), "the unsafe source URL shows as text");
    await screenshots("story-xss");

    await search("安全测试标题");
    await assertHarmless("the search results");
    assert.ok((await hitHeadlines()).includes(XSS_HEADLINE));

    await go("/stories/d20260108-0800-02");
    await assertHarmless("the second story");
    assert.equal(await page.getByRole("heading", { level: 1 }).innerText(), XSS_SECOND);
  });

  await step("every page has screenshots at 1280x800 and 390x844", async () => {
    for (const [name, path] of [
      ["digests", "/digests"],
      ["digest", "/digests/d20260106-1200"],
      ["not-found", "/stories/no-such-story"],
    ]) {
      const response = await go(path);
      assert.ok(response.status() === 200 || name === "not-found", `${path}: ${response.status()}`);
      await screenshots(name);
    }
    assert.ok((await shown()).includes("There is no story"), "a readable 404");
  });
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}

const passed = results.filter(Boolean).length;
const failed = results.length - passed;
console.log(`browser: ${passed} passed, ${failed} failed; screenshots in ${shots}`);
process.exit(failed === 0 ? 0 : 1);
