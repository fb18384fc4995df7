// The job queues a developer would otherwise pick, sending the benchmark's mailing: one job
// per recipient, enqueued first, then worked off by the queue's own worker with nodemailer
// (a pooled SMTP transport) into the same smtp-sink as `bench/dispatch.sh`.
//
//   node peers.mjs graphile-worker|pg-boss DATABASE_URL SMTP_PORT RECIPIENTS CONCURRENCY
//
// Prints one line: deliveries/s from the worker's start to the last job completed.
import net from 'node:net';

import nodemailer from 'nodemailer';
import pg from 'pg';

const [peer, databaseUrl, smtpPort, recipientsArg, concurrencyArg] = process.argv.slice(2);
const recipients = Number(recipientsArg);
const concurrency = Number(concurrencyArg);
const transport = nodemailer.createTransport({
  host: '127.0.0.1', port: Number(smtpPort), secure: false, ignoreTLS: true,
  pool: true, maxConnections: concurrency, maxMessages: Infinity,
  // Each connection with Nagle off, as mailwarm's: nodemailer writes a message in several
  // chunks, and with Nagle on every message waits for the sink's delayed ACK (~40 ms).
  getSocket(options, callback) {
    const socket = net.connect({ host: '127.0.0.1', port: Number(smtpPort), noDelay: true }, () => callback(null, { connection: socket }));
    socket.once('error', callback);
  },
});
const mail = (i) => ({
  from: 'bench@example.com',
  to: `client${i}@example.com`,
  subject: 'Benchmark',
  text: `Hello Client ${i}, this is a benchmark.`,
});

let sent = 0;
let allSent;
const done = new Promise((resolve) => { allSent = resolve; });
async function send(i) {
  await transport.sendMail(mail(i));
  sent += 1;
  if (sent === recipients) allSent();
}

/** Resolves once `sql` (a count) reaches zero, polled every 20 ms. */
async function drained(client, sql) {
  for (;;) {
    const { rows } = await client.query(sql);
    if (Number(rows[0].n) === 0) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

const ids = Array.from({ length: recipients }, (_, i) => i + 1);
const db = new pg.Client({ connectionString: databaseUrl });
await db.connect();
let started;
if (peer === 'graphile-worker') {
  const { makeWorkerUtils, run } = await import('graphile-worker');
  const utils = await makeWorkerUtils({ connectionString: databaseUrl });
  await utils.migrate();
  for (let at = 0; at < ids.length; at += 1000) {
    await utils.addJobs(ids.slice(at, at + 1000).map((i) => ({ identifier: 'send', payload: { i }, maxAttempts: 8 })));
  }
  await utils.release();
  started = performance.now();
  const runner = await run({
    connectionString: databaseUrl,
    concurrency,
    noHandleSignals: true,
    pollInterval: 1000,
    logger: new (await import('graphile-worker')).Logger(() => () => {}),
    taskList: { send: async (payload) => send(payload.i) },
  });
  await done;
  await drained(db, 'SELECT count(*) AS n FROM graphile_worker._private_jobs');
  await runner.stop();
} else if (peer === 'pg-boss') {
  const { PgBoss } = await import('pg-boss');
  const boss = new PgBoss({ connectionString: databaseUrl, max: concurrency + 2 });
  boss.on('error', (e) => console.error(e));
  await boss.start();
  await boss.createQueue('send');
  for (let at = 0; at < ids.length; at += 1000) {
    await boss.insert('send', ids.slice(at, at + 1000).map((i) => ({ data: { i }, retryLimit: 7 })));
  }
  started = performance.now();
  // Each of the `concurrency` workers fetches 20 jobs at a time and sends them one by one.
  await boss.work('send', { localConcurrency: concurrency, batchSize: 20, pollingIntervalSeconds: 0.5 }, async (jobs) => {
    for (const job of jobs) await send(job.data.i);
  });
  await done;
  await drained(db, "SELECT count(*) AS n FROM pgboss.job WHERE state <> 'completed'");
  await boss.stop({ graceful: true, timeout: 5000 });
} else {
  throw new Error(`no peer ${peer}: graphile-worker or pg-boss`);
}
const seconds = (performance.now() - started) / 1000;
await db.end();
transport.close();
console.log(`${peer} + nodemailer: ${recipients} deliveries in ${seconds.toFixed(1)} s, ${(recipients / seconds).toFixed(0)} deliveries/s`);
