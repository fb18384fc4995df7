// End to end through the web front end, in headless Chromium (Debian's, driven by
// playwright-core), against the real `server` binary, a real PostgreSQL and an SMTP
// server of our own on loopback.
//
//   SERVER_BIN=… DATABASE_URL=… ARTIFACTS=dir node web-e2e.mjs
//
// Exits 0 when every flow passed; screenshots of every page at desktop and phone widths
// go to ARTIFACTS.

import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import net from 'node:net';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { simpleParser } from 'mailparser';

import en from '../../web/app/i18n/en.js';
import ru from '../../web/app/i18n/ru.js';

const { SERVER_BIN, DATABASE_URL, ARTIFACTS } = process.env;
assert.ok(SERVER_BIN && DATABASE_URL && ARTIFACTS, 'SERVER_BIN, DATABASE_URL and ARTIFACTS are needed');
mkdirSync(ARTIFACTS, { recursive: true });
const PASSWORD = 'long enough secret';

// ---- An SMTP server that keeps what it is given. Mail to slow-* addresses is answered
// only after a pause, so the browser is watching before the attempts are logged.
const mails = [];
function smtpServer() {
  return new Promise((resolve) => {
    const server = net.createServer((socket) => {
      let buffer = '';
      let inData = false;
      let envelope = { from: '', to: [] };
      let data = [];
      const reply = (line) => socket.write(`${line}\r\n`);
      reply('220 e2e.test ESMTP');
      socket.on('data', (chunk) => {
        buffer += chunk.toString('utf8');
        let at;
        while ((at = buffer.indexOf('\r\n')) >= 0) {
          const line = buffer.slice(0, at);
          buffer = buffer.slice(at + 2);
          if (inData) {
            if (line === '.') {
              inData = false;
              const mail = { ...envelope, data: data.join('\n') };
              const slow = mail.to.some((to) => to.startsWith('slow-'));
              setTimeout(() => {
                mails.push(mail);
                reply('250 2.0.0 queued as e2e');
              }, slow ? 2500 : 0);
              envelope = { from: '', to: [] };
              data = [];
            } else {
              data.push(line.startsWith('..') ? line.slice(1) : line);
            }
            continue;
          }
          const verb = line.slice(0, 4).toUpperCase();
          if (verb === 'EHLO') reply('250-e2e.test\r\n250-8BITMIME\r\n250 SMTPUTF8');
          else if (verb === 'HELO') reply('250 e2e.test');
          else if (verb === 'MAIL') { envelope.from = line.slice(10).replace(/[<>]/g, '').split(' ')[0]; reply('250 OK'); }
          else if (verb === 'RCPT') { envelope.to.push(line.slice(8).replace(/[<>]/g, '').split(' ')[0].toLowerCase()); reply('250 OK'); }
          else if (verb === 'DATA') { inData = true; reply('354 go on'); }
          else if (verb === 'QUIT') { reply('221 bye'); socket.end(); }
          else reply('250 OK');
        }
      });
      socket.on('error', () => {});
    });
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

function decoded(mail) {
  // Quoted-printable soft breaks and escapes, enough to read links; only where the mail
  // says it is quoted-printable (a 7bit `token=FF...` is no escape).
  if (!/^Content-Transfer-Encoding: quoted-printable/im.test(mail.data)) return mail.data;
  return mail.data.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_, hex) => String.fromCharCode(parseInt(hex, 16)));
}

async function waitFor(what, check, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function linkMailedTo(address, path) {
  const mail = await waitFor(`a mail to ${address}`, () =>
    [...mails].reverse().find((m) => m.to.includes(address) && decoded(m).includes(path)));
  const found = decoded(mail).match(new RegExp(`https?://\\S*${path}\\?token=[A-Za-z0-9_-]+`));
  assert.ok(found, `no ${path} link in ${mail.data}`);
  return found[0];
}

// ---- The service.
const smtp = await smtpServer();
const smtpPort = smtp.address().port;
const httpPort = await new Promise((resolve) => {
  const probe = net.createServer().listen(0, '127.0.0.1', () => { const { port } = probe.address(); probe.close(() => resolve(port)); });
});
const base = `http://127.0.0.1:${httpPort}`;
const env = {
  ...process.env,
  DATABASE_URL,
  BIND_ADDR: `127.0.0.1:${httpPort}`,
  PUBLIC_URL: base,
  SMTP_URL: `smtp://127.0.0.1:${smtpPort}`,
  DISPATCH_INTERVAL: '2s',
  RUST_LOG: 'warn',
};
delete env.TEST_DATABASE_URL;

function run(args, input) {
  return new Promise((resolve, reject) => {
    const child = spawn(SERVER_BIN, args, { env, stdio: ['pipe', 'pipe', 'inherit'] });
    child.stdin.end(input || '');
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`server ${args.join(' ')} exited ${code}`))));
  });
}
await run(['migrate']);
await run(['create-user', '--email', 'boss@example.com', '--full-name', 'Mia Manager', '--role', 'manager'], `${PASSWORD}\n`);
await run(['create-user', '--email', 'root@example.com', '--full-name', 'Ada Admin', '--role', 'admin'], `${PASSWORD}\n`);
const server = spawn(SERVER_BIN, [], { env, stdio: ['ignore', 'inherit', 'inherit'] });
const stopServer = () => server.kill('SIGTERM');
process.on('exit', stopServer);
await waitFor('the server', async () => {
  try { return (await fetch(`${base}/readyz`)).ok; } catch { return false; }
}, 60000);

// ---- The browser.
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
const problems = [];
async function newPage(width = 1280, height = 860) {
  const context = await browser.newContext({ viewport: { width, height }, baseURL: base, timezoneId: 'Europe/Moscow', locale: 'en-GB' });
  const page = await context.newPage();
  page.on('console', (msg) => { if (msg.type() === 'error') problems.push(`console: ${msg.text()} (${msg.location().url})`); });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('dialog', (dialog) => dialog.accept());
  return page;
}
const shots = [];
// `idle: false` where a sandboxed preview frame is shown: Chromium reports no network idle
// for its opaque-origin document, and the test has waited for that frame's content.
async function screenshot(page, name, { idle = true } = {}) {
  if (idle) await page.waitForLoadState('networkidle');
  if (name !== 'graphiql') {
    const text = await page.evaluate(() => document.body.innerText);
    assert.doesNotMatch(text, /\bnull\b|\bundefined\b|\[object Object\]|\bNaN\b/, `the ${name} page shows a stray value`);
  }
  for (const [label, width, height] of [['desktop', 1280, 860], ['phone', 390, 844]]) {
    await page.setViewportSize({ width, height });
    await page.screenshot({ path: `${ARTIFACTS}/${name}-${label}.png`, fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 860 });
  shots.push(name);
}
// A GraphQL request from the page, with its session cookie (as the front end sends them).
async function api(page, query, variables = {}) {
  return page.evaluate(async ([q, v]) => {
    const response = await fetch('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: q, variables: v }),
    });
    return response.json();
  }, [query, variables]);
}
async function heading(page, text) {
  await page.getByRole('heading', { level: 1, name: text }).waitFor();
}
async function login(page, email, password = PASSWORD) {
  await page.goto('/login');
  await page.getByLabel(en['field.email']).fill(email);
  await page.getByLabel(en['field.password']).fill(password);
  await page.getByRole('button', { name: en['login.submit'] }).click();
  await heading(page, en['mailings.title']);
}

try {
  // The two languages have the same texts.
  assert.deepEqual(Object.keys(ru).sort(), Object.keys(en).sort(), 'en.js and ru.js keys differ');

  // The front end's Content-Security-Policy forbids inline and foreign scripts.
  const index = await fetch(`${base}/`);
  const csp = index.headers.get('content-security-policy');
  assert.match(csp, /script-src 'self'(;|$)/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);

  const page = await newPage();
  await page.goto('/');
  await heading(page, en['home.title']);
  await screenshot(page, 'home-empty');

  // 1. Register, open the link from the mail, log in.
  await page.goto('/register');
  await screenshot(page, 'register');
  await page.getByRole('button', { name: en['register.submit'] }).click();
  // The marks come with the API's answer: wait for it rather than look at once.
  await waitFor('empty fields marked', async () => (await page.locator('[aria-invalid="true"]').count()) > 0, 5000);
  await page.getByLabel(en['field.fullName']).fill('Ann Lee');
  await page.getByLabel(en['field.email']).fill('ann@example.com');
  await page.getByLabel(en['field.password']).fill('short');
  await page.getByRole('button', { name: en['register.submit'] }).click();
  // The API's error appears next to the field it names.
  await page.locator('input[name="password"][aria-invalid="true"]').waitFor();
  await page.getByLabel(en['field.password']).fill(PASSWORD);
  await page.getByRole('button', { name: en['register.submit'] }).click();
  await page.getByText('ann@example.com', { exact: false }).first().waitFor();
  await page.goto(await linkMailedTo('ann@example.com', '/verify-email'));
  await heading(page, en['verify.title']);
  await screenshot(page, 'verify-email');
  await page.goto('/login');
  await screenshot(page, 'login');
  await login(page, 'ann@example.com');
  // The session is an HttpOnly cookie: the page cannot read it, and keeps no token.
  assert.equal(await page.evaluate(() => document.cookie), '');
  assert.equal(await page.evaluate(() => JSON.stringify(Object.keys(localStorage).filter((k) => k !== 'mailwarm.lang'))), '[]');

  // Two clients (one named with markup), a message.
  await page.goto('/clients');
  await heading(page, en['clients.title']);
  for (const [email, name] of [['slow-1@example.com', 'Bob Stone'], ['slow-2@example.com', '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">']]) {
    await page.getByLabel(en['field.email']).fill(email);
    await page.getByLabel(en['field.fullName']).fill(name);
    await page.getByRole('button', { name: en['clients.create'] }).click();
    await page.getByRole('cell', { name: email, exact: true }).waitFor();
  }
  // Markup in a name is text: shown as written, never run.
  await page.getByRole('cell', { name: '<script>window.__pwned = 1</script>', exact: false }).waitFor();
  assert.equal(await page.evaluate(() => window.__pwned), undefined, 'a client name ran as script');
  assert.equal(await page.locator('main script, main img').count(), 0);
  // Tags: made on the page, set on the ticked clients, shown per client, and a filter.
  await page.getByLabel(en['clients.newTag']).fill('VIP');
  await page.getByRole('button', { name: en['clients.createTag'] }).click();
  await page.locator('#client-tag option', { hasText: 'VIP (0)' }).waitFor({ state: 'attached' });
  await page.getByLabel(en['clients.tick'].replace('{email}', 'slow-1@example.com')).check();
  await page.getByRole('button', { name: en['clients.tagTicked'], exact: true }).click();
  await page.getByText(en['clients.tagged'].replace('{n}', '1')).waitFor();
  await page.getByRole('row', { name: /slow-1@example\.com/ }).locator('.tag').getByText('VIP').waitFor();
  await page.locator('#client-tag').selectOption({ label: 'VIP (1)' });
  await page.getByText(en['clients.count'].replace('{n}', '1')).waitFor();
  await page.locator('#client-tag').selectOption('');
  await page.getByText(en['clients.count'].replace('{n}', '2')).waitFor();
  await screenshot(page, 'clients');
  // The export link works with the session cookie alone.
  const exported = await (await page.request.get('/export/clients.csv')).text();
  assert.match(exported, /^email,full_name,comment,tags\n/);
  assert.match(exported, /slow-1@example.com,Bob Stone,,VIP\n/);

  // Suppressions: an address added by hand (in another case) shows on its client's row,
  // and is lifted there; a bad address is an error next to its field.
  await page.goto('/suppressions');
  await heading(page, en['suppressions.title']);
  await page.getByRole('textbox', { name: en['suppressions.address'] }).fill('not an address');
  await page.getByRole('button', { name: en['suppressions.suppress'] }).click();
  await page.locator('.field .error').filter({ hasText: /./ }).first().waitFor();
  await page.getByRole('textbox', { name: en['suppressions.address'] }).fill('SLOW-1@example.com');
  await page.getByRole('button', { name: en['suppressions.suppress'] }).click();
  await page.getByRole('cell', { name: 'SLOW-1@example.com', exact: true }).waitFor();
  await page.getByRole('cell', { name: en['reason.MANUAL'], exact: true }).waitFor();
  await screenshot(page, 'suppressions');
  await page.goto('/clients');
  const suppressedRow = page.getByRole('row', { name: /slow-1@example\.com/ });
  await suppressedRow.getByText(en['clients.suppressed'].replace('{reason}', en['reason.MANUAL'])).waitFor();
  await suppressedRow.getByRole('button', { name: en['suppressions.liftOf'].replace('{email}', 'slow-1@example.com') }).click();
  await page.locator('.suppressed').waitFor({ state: 'detached' });
  await page.goto('/suppressions');
  await page.getByText(en['suppressions.none']).waitFor();

  await page.goto('/messages');
  await page.getByLabel(en['field.subject']).fill('Spring news');
  await page.getByLabel(en['field.body']).fill('Hello {{full_name}},\n\nspring is here.\n\nUnsubscribe: {{unsubscribe_url}}');
  await page.locator('.preview').getByText('Hello Ann Example,', { exact: false }).waitFor();
  await page.getByRole('button', { name: en['messages.create'] }).click();
  await page.getByRole('cell', { name: 'Spring news' }).waitFor();
  await screenshot(page, 'messages');

  // An HTML newsletter: a layout, then a message in it with variables, previewed for the
  // client whose name is markup (shown as text in the sandboxed frame, never run).
  await page.goto('/layouts');
  await heading(page, en['layouts.title']);
  await page.getByLabel(en['field.name']).fill('Brand');
  await page.getByLabel(en['field.html']).fill('<html><head><style>.card { color: #0a7d55; }</style></head>'
    + '<body><div class="card">{{ content }}</div><p>See you, {{ client.attributes.city | default("friend") }}</p></body></html>');
  await page.getByRole('button', { name: en['layouts.create'] }).click();
  await page.getByRole('cell', { name: 'Brand' }).waitFor();
  await screenshot(page, 'layouts');
  await page.goto('/messages');
  await page.getByLabel(en['field.subject']).fill('June letter');
  await page.getByLabel(en['field.format']).selectOption('HTML');
  await page.getByLabel(en['field.layout']).selectOption({ label: 'Brand' });
  await page.getByLabel(en['field.body']).fill('<h2>Dear {{ client.full_name }}</h2><p>Our June news.</p>');
  await page.getByLabel(en['messages.previewFor']).selectOption({ label: '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> <slow-2@example.com>' });
  const frame = page.frameLocator('iframe.preview-frame');
  await frame.getByText('Dear <script>window.__pwned = 1</script>', { exact: false }).waitFor();
  await frame.getByText('See you, friend').waitFor();
  assert.equal(await frame.locator('script, img').count(), 0, 'markup in a name became elements in the preview');
  assert.equal(await frame.locator('.card').getAttribute('style'), 'color: #0a7d55;', 'the CSS is not inlined');
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  await screenshot(page, 'message-html-editor', { idle: false });
  await page.getByRole('tab', { name: en['messages.previewText'] }).click();
  await page.locator('.preview-text').getByText('Dear <script>', { exact: false }).waitFor();
  assert.ok(await frame.locator('body').isHidden() || await page.locator('iframe.preview-frame').isHidden(), 'the HTML stays shown');
  await page.getByRole('button', { name: en['messages.create'] }).click();
  await page.getByRole('cell', { name: 'June letter' }).waitFor();

  // A mailing that starts now, to both clients.
  await page.goto('/mailings/new');
  await heading(page, en['mailings.newTitle']);
  await page.getByLabel(en['field.message']).selectOption({ label: 'Spring news' });
  // Daily, with no end: it keeps running after its first run until completed by hand.
  await page.getByLabel(en['field.periodicity']).selectOption('DAILY');
  await page.getByRole('button', { name: en['mailings.selectAll'] }).click();
  await page.getByText(en['mailings.selected'].replace('{n}', '2')).waitFor();
  await screenshot(page, 'mailing-editor');
  await page.getByRole('button', { name: en['mailings.create'] }).click();
  await page.locator('#attempt-log').waitFor();
  // The mail server holds its answers for a moment: the log starts empty, and fills
  // through the subscription, without a reload.
  assert.equal(await page.locator('#attempt-log tbody tr').count(), 0, 'attempts were logged before the page watched');
  await page.evaluate(() => { window.__sameDocument = true; });
  await waitFor('two attempts in the log', async () => (await page.locator('#attempt-log tbody tr').count()) === 2);
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'the page reloaded');
  await page.getByText(en['attempt.SUCCESS']).first().waitFor();
  await waitFor('both mails at the SMTP server', () =>
    ['slow-1@example.com', 'slow-2@example.com'].every((to) => mails.some((m) => m.to.includes(to) && m.data.includes('Spring news'))));
  await waitFor('the live progress of the run', async () => {
    const text = await page.locator('#progress').textContent();
    if (!text.includes('2 of 2')) console.log('progress:', text);
    return text.includes('2 of 2');
  }, 10000);
  // The counts follow without a reload too.
  await page.locator('dd[data-stat="sent"]').getByText('2', { exact: true }).waitFor();
  await screenshot(page, 'mailing-detail');

  await page.goto('/mailings');
  await page.getByRole('link', { name: 'Spring news' }).waitFor();
  await screenshot(page, 'mailings');
  // Complete it: it moves to the completed mailings.
  await page.getByRole('link', { name: 'Spring news' }).click();
  await page.locator('#attempt-log').waitFor();
  await page.getByRole('button', { name: en['mailings.complete'] }).click();
  await page.locator('main .meta').getByText(en['status.COMPLETED']).waitFor();
  await page.goto('/mailings/completed');
  await page.getByRole('link', { name: 'Spring news' }).waitFor();
  await screenshot(page, 'mailings-completed');
  await page.goto('/mailings');
  await page.getByText(en['mailings.none']).waitFor();

  // The newsletter goes out once; what reaches the SMTP server is a well-formed
  // multipart/alternative, read back with a real MIME parser.
  await page.goto('/mailings/new');
  await heading(page, en['mailings.newTitle']);
  await page.getByLabel(en['field.message']).selectOption({ label: 'June letter' });
  await page.getByRole('button', { name: en['mailings.selectAll'] }).click();
  await page.getByRole('button', { name: en['mailings.create'] }).click();
  await page.locator('#attempt-log').waitFor();
  const june = await waitFor('the newsletter at the SMTP server', () =>
    mails.find((m) => m.to.includes('slow-2@example.com') && m.data.includes('multipart/alternative')));
  const parsed = await simpleParser(june.data);
  assert.equal(parsed.headers.get('content-type').value, 'multipart/alternative');
  assert.equal(parsed.subject, 'June letter');
  assert.ok(parsed.text.includes('Dear <script>window.__pwned = 1</script>'), parsed.text);
  assert.ok(parsed.html.includes('Dear &lt;script&gt;window.__pwned = 1&lt;/script&gt;'), parsed.html);
  assert.ok(!/<script|<img/i.test(parsed.html), parsed.html);
  assert.ok(parsed.html.includes('style="color: #0a7d55;"') && parsed.html.includes('See you, friend'), parsed.html);
  assert.ok(parsed.html.includes('/unsubscribe?c='), 'the unsubscribe footer is missing');

  await page.goto('/settings');
  await heading(page, en['settings.title']);
  // An API key for a client app: made on the settings page, shown once, usable as a bearer
  // token outside the browser (read only), and revoked from the same page.
  await page.getByLabel(en['field.name']).fill('Reporting app');
  await page.getByRole('button', { name: en['apiKeys.create'] }).click();
  const secret = (await page.locator('#api-key-secret').textContent()).trim();
  assert.match(secret, /^mw_[A-Za-z0-9_-]{40,}$/);
  await page.getByRole('cell', { name: 'Reporting app' }).waitFor();
  await screenshot(page, 'settings');
  const asKey = async (query) => (await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` },
    body: JSON.stringify({ query }),
  })).json();
  assert.equal((await asKey('{ me { email } }')).data.me.email, 'ann@example.com');
  const refused = await asKey('mutation { createMessage(input: { subject: "x", body: "y" }) { id } }');
  assert.equal(refused.errors[0].extensions.code, 'FORBIDDEN', JSON.stringify(refused));
  await page.getByRole('button', { name: en['apiKeys.revoke'] }).click();
  await page.getByText(en['apiKeys.none']).waitFor();
  assert.equal((await asKey('{ me { email } }')).data.me, null, 'a revoked key still signs in');

  // The Russian translation.
  await page.selectOption('#lang', 'ru');
  await page.getByRole('link', { name: ru['nav.mailings'], exact: true }).waitFor();
  await heading(page, ru['settings.title']);
  await screenshot(page, 'settings-ru');
  await page.selectOption('#lang', 'en');

  // 2. Forgot password → the mailed link → a new password → log in with it.
  await page.getByRole('button', { name: en['nav.logout'] }).click();
  await page.locator('#top').getByRole('link', { name: en['nav.login'] }).waitFor();
  await page.goto('/forgot-password');
  await page.getByLabel(en['field.email']).fill('ann@example.com');
  await screenshot(page, 'forgot-password');
  await page.getByRole('button', { name: en['forgot.submit'] }).click();
  await page.getByRole('status').waitFor();
  await page.goto(await linkMailedTo('ann@example.com', '/reset-password'));
  await heading(page, en['reset.title']);
  await screenshot(page, 'reset-password');
  await page.getByLabel(en['field.newPassword']).fill('a brand new secret');
  await page.getByRole('button', { name: en['reset.submit'] }).click();
  await page.getByText(en['reset.ok']).waitFor();
  await login(page, 'ann@example.com', 'a brand new secret');

  // 3. A second user sees none of Ann's clients.
  const other = await newPage();
  await other.goto('/register');
  await other.getByLabel(en['field.fullName']).fill('Cy Other');
  await other.getByLabel(en['field.email']).fill('cy@example.com');
  await other.getByLabel(en['field.password']).fill(PASSWORD);
  await other.getByRole('button', { name: en['register.submit'] }).click();
  await other.goto(await linkMailedTo('cy@example.com', '/verify-email'));
  await heading(other, en['verify.title']);
  await login(other, 'cy@example.com');
  await other.goto('/clients');
  await other.getByText(en['clients.none']).waitFor();
  assert.equal(await other.getByText('slow-1@example.com').count(), 0, "another user's client is visible");
  assert.equal(await other.getByRole('link', { name: en['nav.users'] }).count(), 0);

  // 4. Editing a mailing of more than a page of clients (the API pages them 100 at a time)
  // changes only what the user changed: the clients the picker never showed stay.
  const csv = ['email,full_name', ...Array.from({ length: 150 }, (_, i) => `many-${i}@example.com,Many ${i}`)].join('\n');
  const imported = await api(other, 'mutation($csv: String!) { importClients(csv: $csv) { created } }', { csv });
  assert.equal(imported.data.importClients.created, 150, JSON.stringify(imported));
  const clientIds = [];
  for (let after = null; ;) {
    const { data } = await api(other, 'query($after: String) { clients(first: 100, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } }', { after });
    clientIds.push(...data.clients.nodes.map((c) => c.id));
    if (!data.clients.pageInfo.hasNextPage) break;
    after = data.clients.pageInfo.endCursor;
  }
  assert.equal(clientIds.length, 150);
  const message = await api(other, 'mutation { createMessage(input: { subject: "Many", body: "Hi {{full_name}}" }) { id } }');
  const created = await api(other, 'mutation($input: MailingInput!) { createMailing(input: $input) { id } }', {
    input: { startsAt: '2030-01-01T08:00:00Z', periodicity: 'DAILY', timeZone: 'UTC', messageId: message.data.createMessage.id, clientIds },
  });
  const bigId = created.data.createMailing.id;
  await other.goto(`/mailings/${bigId}/edit`);
  await heading(other, en['mailings.editTitle']);
  await other.getByText(en['mailings.selected'].replace('{n}', '150')).waitFor();
  await other.getByLabel(en['field.periodicity']).selectOption('WEEKLY');
  const firstBox = other.locator('#client-picker input[type=checkbox]').first();
  const removed = (await firstBox.getAttribute('id')).replace('pick-', '');
  await firstBox.uncheck();
  await other.getByText(en['mailings.selected'].replace('{n}', '149')).waitFor();
  await other.getByRole('button', { name: en['action.save'] }).click();
  await other.waitForURL(`**/mailings/${bigId}`);
  const saved = [];
  for (let after = null; ;) {
    const { data } = await api(other, 'query($id: ID!, $after: String) { mailing(id: $id) { periodicity clients(first: 100, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } } }', { id: bigId, after });
    assert.equal(data.mailing.periodicity, 'WEEKLY');
    saved.push(...data.mailing.clients.nodes.map((c) => c.id));
    if (!data.mailing.clients.pageInfo.hasNextPage) break;
    after = data.mailing.clients.pageInfo.endCursor;
  }
  assert.deepEqual(saved.sort(), clientIds.filter((id) => id !== removed).sort(), 'saving the editor changed clients the user did not touch');

  // 5. Audiences: a file uploaded with a progress bar, a segment on an attribute with its
  // size, a DAILY mailing to it, and an edit of that mailing that leaves its audience be.
  const rows = ['email,full_name,tags,plan', ...Array.from({ length: 2000 }, (_, i) => `up-${i}@example.com,Up ${i},${i % 10 === 0 ? 'ten' : ''},${i % 4 === 0 ? 'pro' : 'free'}`), 'broken,No Address,,pro'];
  await other.goto('/clients');
  await heading(other, en['clients.title']);
  await other.locator('#csv-file').setInputFiles({ name: 'clients.csv', mimeType: 'text/csv', buffer: Buffer.from(rows.join('\n')) });
  await other.getByRole('button', { name: en['clients.import'], exact: true }).click();
  await other.locator('#import-progress').waitFor();
  await other.getByText(en['clients.imported'].replace('{created}', '2000').replace('{updated}', '0').replace('{errors}', '1')).waitFor({ timeout: 30000 });
  assert.equal(await other.locator('#import-progress').getAttribute('value'), '2001');
  await other.getByText(en['clients.importing'].replace('{processed}', '2001').replace('{total}', '2001')).waitFor();
  const errorsHref = await other.getByRole('link', { name: en['clients.errorsLink'] }).getAttribute('href');
  const errorsCsv = await (await other.request.get(errorsHref)).text();
  assert.match(errorsCsv, /^line,message\r?\n2002,email:/);
  await screenshot(other, 'clients-import');
  await other.getByText(en['clients.segmentFilter']).click();
  await other.getByRole('button', { name: en['segment.add'] }).click();
  await other.getByLabel(en['segment.field'].replace('{n}', '1')).fill('attributes.plan');
  await other.getByLabel(en['segment.value'].replace('{n}', '1')).fill('pro');
  await other.getByText(en['clients.count'].replace('{n}', '500')).waitFor();
  await other.getByLabel(en['clients.newTag']).fill('Pro');
  await other.getByRole('button', { name: en['clients.createTag'] }).click();
  await other.locator('#client-tag option', { hasText: 'Pro (0)' }).waitFor({ state: 'attached' });
  await other.getByLabel(en['clients.tagToApply']).selectOption({ label: 'Pro' });
  await other.getByRole('button', { name: en['clients.tagSegment'] }).click();
  await other.getByText(en['clients.tagged'].replace('{n}', '500')).waitFor();
  await screenshot(other, 'clients-segment');

  await other.goto('/mailings/new');
  await heading(other, en['mailings.newTitle']);
  await other.getByLabel(en['mailings.messageSearchLabel']).fill('Man');
  await other.getByLabel(en['field.message']).selectOption({ label: 'Many' });
  await other.locator('input[name="input.startsAt"]').fill('2030-01-01T08:00');
  await other.getByLabel(en['field.periodicity']).selectOption('DAILY');
  const audience = other.locator('fieldset.audience');
  await audience.getByRole('button', { name: en['segment.add'] }).click();
  await audience.getByLabel(en['segment.field'].replace('{n}', '1')).fill('attributes.plan');
  await audience.getByLabel(en['segment.value'].replace('{n}', '1')).fill('pro');
  await other.getByText(en['mailings.audienceSize'].replace('{n}', '500')).waitFor();
  // Tags join the audience: "ten" adds the free clients every tenth line.
  await audience.getByLabel('ten (200)').check();
  await other.getByText(en['mailings.audienceSize'].replace('{n}', '600')).waitFor();
  await audience.getByLabel('ten (200)').uncheck();
  await other.getByText(en['mailings.audienceSize'].replace('{n}', '500')).waitFor();
  // The picker pages over every client, not the first hundred.
  await audience.getByRole('button', { name: en['page.next'] }).click();
  await audience.getByText('101–200', { exact: false }).waitFor();
  await screenshot(other, 'mailing-audience');
  await other.getByRole('button', { name: en['mailings.create'] }).click();
  await other.locator('#attempt-log').waitFor();
  const segmentId = other.url().split('/').pop();
  const audienceQuery = 'query($id: ID!) { mailing(id: $id) { periodicity audience { allClients tags { name } segment { match conditions { field op value } } size clients { totalCount } } } }';
  const before = (await api(other, audienceQuery, { id: segmentId })).data.mailing;
  assert.deepEqual(before.audience, {
    allClients: false, tags: [], size: 500, clients: { totalCount: 0 },
    segment: { match: 'ALL', conditions: [{ field: 'attributes.plan', op: 'EQ', value: 'pro' }] },
  });
  assert.equal(before.periodicity, 'DAILY');
  await other.goto(`/mailings/${segmentId}/edit`);
  await heading(other, en['mailings.editTitle']);
  await other.getByText(en['mailings.audienceSize'].replace('{n}', '500')).waitFor();
  await other.getByLabel(en['field.periodicity']).selectOption('WEEKLY');
  await other.getByRole('button', { name: en['action.save'] }).click();
  await other.waitForURL(`**/mailings/${segmentId}`);
  const after = (await api(other, audienceQuery, { id: segmentId })).data.mailing;
  assert.equal(after.periodicity, 'WEEKLY');
  assert.deepEqual(after.audience, before.audience, 'saving the editor changed an audience the user did not touch');

  // A manager sees the users page and can block a user.
  const manager = await newPage();
  await login(manager, 'boss@example.com');
  await manager.getByRole('link', { name: en['nav.users'] }).click();
  await heading(manager, en['users.title']);
  await manager.getByRole('cell', { name: 'cy@example.com' }).waitFor();
  await screenshot(manager, 'users');

  // The blog: an admin writes a post, anyone reads it.
  const admin = await newPage();
  await login(admin, 'root@example.com');
  await admin.goto('/blog/new');
  await admin.getByLabel(en['field.title']).fill('Warm-up tips');
  await admin.getByLabel(en['field.postBody']).fill('# Send on time\n\nKeep it short. <b>not bold</b>');
  await admin.getByLabel(en['field.published']).check();
  await screenshot(admin, 'blog-editor');
  await admin.getByRole('button', { name: en['action.save'] }).click();
  await heading(admin, 'Warm-up tips');
  await admin.goto('/blog');
  await admin.getByRole('link', { name: 'Warm-up tips' }).click();
  await admin.getByText('<b>not bold</b>', { exact: false }).waitFor();
  await screenshot(admin, 'blog-post');
  await page.goto('/blog');
  await page.getByRole('link', { name: 'Warm-up tips' }).waitFor();
  await screenshot(page, 'blog');
  await page.goto('/');
  await page.getByRole('link', { name: 'Warm-up tips' }).waitFor();
  await screenshot(page, 'home');

  // Sending: an admin adds a relay (its field error first) and a sender identity; a user
  // sends as it, inside a sending window, and the log names the server that carried it.
  await admin.goto('/sending');
  await heading(admin, en['sending.title']);
  await admin.getByRole('cell', { name: 'SMTP_URL', exact: false }).first().waitFor();
  await admin.getByRole('textbox', { name: en['sending.name'], exact: true }).fill('relay');
  await admin.getByRole('textbox', { name: en['sending.url'], exact: true }).fill('http://relay.example');
  await admin.getByLabel(en['sending.limit.perSecond']).fill('50');
  await admin.getByRole('button', { name: en['sending.addServer'] }).click();
  await admin.getByText('is not smtp:// or smtps://', { exact: false }).waitFor();
  await admin.getByRole('textbox', { name: en['sending.url'], exact: true }).fill(`smtp://127.0.0.1:${smtpPort}`);
  await admin.getByRole('button', { name: en['sending.addServer'] }).click();
  await admin.getByRole('cell', { name: 'relay', exact: true }).waitFor();
  await admin.getByText(en['sending.perSecond'].replace('{n}', '50')).waitFor();
  // Edited: a lower priority, the URL (and its credentials) kept.
  await admin.getByRole('button', { name: en['sending.editOf'].replace('{name}', 'relay') }).click();
  await admin.getByRole('textbox', { name: en['sending.name'], exact: true }).fill('relay');
  await admin.getByLabel(en['sending.priority']).fill('5');
  await admin.getByRole('button', { name: en['sending.saveServer'] }).click();
  await admin.getByText(en['sending.saved'].replace('{name}', 'relay')).waitFor();
  await admin.getByRole('row', { name: /relay/ }).getByRole('cell', { name: '5', exact: true }).waitFor();
  await admin.getByLabel(en['sending.fromName']).fill('Acme News');
  await admin.getByLabel(en['sending.fromAddress']).fill('news@acme.example');
  await admin.getByLabel(en['sending.allowEveryone']).check();
  await admin.getByRole('button', { name: en['sending.addIdentity'] }).click();
  await admin.getByText('choose at least one server').waitFor();
  await admin.getByRole('checkbox', { name: 'relay' }).check();
  await admin.getByRole('button', { name: en['sending.addIdentity'] }).click();
  await admin.getByRole('cell', { name: 'Acme News <news@acme.example>' }).waitFor();
  await screenshot(admin, 'sending');

  await page.goto('/mailings/new');
  await heading(page, en['mailings.newTitle']);
  await page.getByLabel(en['field.message']).selectOption({ label: 'Spring news' });
  await page.getByRole('button', { name: en['mailings.selectAll'] }).click();
  await page.getByLabel(en['field.sender']).selectOption({ label: 'Acme News <news@acme.example>' });
  await page.getByLabel(en['field.window']).check();
  for (const day of ['day.6', 'day.7']) await page.getByRole('checkbox', { name: en[day], exact: true }).check();
  await page.getByLabel(en['field.windowFrom']).fill('0');
  await page.getByLabel(en['field.windowTo']).fill('0');
  await page.getByRole('button', { name: en['mailings.create'] }).click();
  await page.getByText('must be 1-24').waitFor();
  await page.getByLabel(en['field.windowTo']).fill('24');
  await screenshot(page, 'mailing-editor-sender');
  // Enter in the field submits the form, as a keyboard user would.
  await page.getByLabel(en['field.windowTo']).press('Enter');
  await page.locator('#attempt-log').waitFor();
  await waitFor('the mails from the identity', () =>
    ['slow-1@example.com', 'slow-2@example.com'].every((to) =>
      mails.some((m) => m.to.includes(to) && m.data.includes('Acme News') && m.data.includes('<news@acme.example>'))));
  await page.locator('#attempt-log').getByRole('cell', { name: 'relay', exact: true }).first().waitFor();
  await page.locator('main .meta').getByText('as Acme News <news@acme.example>', { exact: false }).waitFor();

  // GraphiQL runs under its own policy without complaints.
  await page.goto('/graphiql');
  await page.locator('.graphiql-container').waitFor();
  await page.waitForLoadState('networkidle');
  // Its introspection query (depth 15) passes the depth limit: the schema loads.
  assert.equal(await page.getByText('nested too deep').count(), 0, 'GraphiQL could not load the schema');
  await page.getByRole('button', { name: /documentation/i }).click();
  await page.getByText('Mutation', { exact: true }).first().waitFor();
  await screenshot(page, 'graphiql');

  // Keyboard: the first Tab reaches the skip link, Enter moves to the content.
  await page.goto('/');
  await heading(page, en['home.title']);
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.className), 'skip');

  assert.deepEqual(problems, [], 'the browser reported errors');
  console.log(`web e2e passed; screenshots of ${shots.length} pages in ${ARTIFACTS}`);
} catch (err) {
  console.error('browser problems so far:', problems);
  throw err;
} finally {
  await browser.close();
  stopServer();
  smtp.close();
}
