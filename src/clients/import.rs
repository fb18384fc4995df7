//! Imports of any size (`POST /import/clients.csv`): the upload is parsed as it arrives
//! and streamed into `import_rows` with COPY, memory flat in the file's size; then a
//! background job (`ImportClients`, on the shared job runner) checks and upserts the rows
//! in chunks, each chunk one transaction that also moves the job's counters, so progress
//! is visible as it goes and a job cut short (a killed instance) resumes where it stopped.
//! The rules per line are those of `importClients` (`csv::check`).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Array, Integer, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::SinkExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;

use super::csv::{self, Cells, Columns};
use super::{model, tags};
use crate::db::DbPool;
use crate::db::schema::{import_errors, import_jobs};
use crate::db::types::{ImportJobId, UserId};
use crate::error::{AppError, AppResult};
use crate::jobs::{self, BackgroundJob, JobError};

/// Most data lines one upload may hold.
pub const MAX_LINES: usize = 10_000_000;
/// Lines checked and written per transaction.
const CHUNK: i64 = 5_000;
/// Lines between two ANALYZE of the tables an import grows.
const ANALYZE_EVERY: usize = 50_000;
/// How long one run of the job works before it queues its continuation (under the lease).
const SLICE: Duration = Duration::from_secs(20);
/// COPY data handed to PostgreSQL at a time.
const COPY_BUFFER: usize = 256 * 1024;

#[derive(
    async_graphql::Enum,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum ImportStatus {
    /// Uploaded; waiting for a runner.
    Queued,
    Running,
    Done,
    /// Stopped; `failure` says why.
    Failed,
}

crate::text_enum!(ImportStatus { Queued => "queued", Running => "running", Done => "done", Failed => "failed" });

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = import_jobs, check_for_backend(Pg))]
pub struct ImportJob {
    pub id: ImportJobId,
    pub owner_id: UserId,
    pub status: ImportStatus,
    pub total: i32,
    pub processed: i32,
    pub created: i32,
    pub updated: i32,
    pub error_count: i32,
    pub failure: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

pub async fn find(conn: &mut AsyncPgConnection, owner: UserId, id: ImportJobId) -> QueryResult<Option<ImportJob>> {
    import_jobs::table
        .filter(import_jobs::id.eq(id).and(import_jobs::owner_id.eq(owner)))
        .select(ImportJob::as_select())
        .first(conn)
        .await
        .optional()
}

/// Forgets uploads that never reached the job queue (the process stopped during the COPY):
/// a day later, a QUEUED job with no queued work. Part of the recurring sweep.
pub async fn sweep(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM import_jobs j WHERE j.status = 'queued' AND j.created_at < now() - interval '1 day' \
         AND NOT EXISTS (SELECT 1 FROM background_jobs b WHERE b.kind = $1 AND b.payload ->> 'job' = j.id::text)",
    )
    .bind::<Text, _>(ImportClients::KIND)
    .execute(conn)
    .await
}

/// A line the import left out, and why.
#[derive(Debug, Clone, Queryable)]
pub struct LineError {
    pub line: i32,
    pub message: String,
}

/// The job's line errors after line `after`, in line order.
pub async fn errors(
    conn: &mut AsyncPgConnection,
    id: ImportJobId,
    after: Option<i32>,
    limit: i64,
) -> QueryResult<Vec<LineError>> {
    import_errors::table
        .filter(import_errors::job_id.eq(id))
        .filter(import_errors::line.gt(after.unwrap_or(0)))
        .order(import_errors::line)
        .limit(limit)
        .select((import_errors::line, import_errors::message))
        .load(conn)
        .await
}

/// Errors listed per page: 100 unless asked, at most 1,000.
pub fn error_page_limit(first: Option<i32>) -> i64 {
    i64::from(first.unwrap_or(100).clamp(1, 1_000))
}

/// Takes an upload: a job row, the file's lines staged with COPY (`database_url` gives
/// the COPY its own connection; diesel-async has no COPY), then the job queued. A file
/// whose header is unusable is refused (BAD_USER_INPUT on `csv`) and leaves nothing behind.
pub async fn stage<R>(pool: &DbPool, database_url: &str, owner: UserId, upload: R) -> AppResult<ImportJobId>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let job: ImportJobId = {
        let mut conn = pool.get().await?;
        diesel::insert_into(import_jobs::table)
            .values(import_jobs::owner_id.eq(owner))
            .returning(import_jobs::id)
            .get_result(&mut conn)
            .await?
    };
    match copy(database_url, job, upload).await {
        Ok(total) => {
            let mut conn = pool.get().await?;
            conn.transaction::<_, AppError, _>(async |conn| {
                diesel::update(import_jobs::table.filter(import_jobs::id.eq(job)))
                    .set(import_jobs::total.eq(i32::try_from(total).unwrap_or(i32::MAX)))
                    .execute(conn)
                    .await?;
                jobs::enqueue(conn, &ImportClients { job }).await?;
                Ok(())
            })
            .await?;
            Ok(job)
        }
        Err(err) => {
            if let Ok(mut conn) = pool.get().await {
                let _ = diesel::delete(import_jobs::table.filter(import_jobs::id.eq(job)))
                    .execute(&mut conn)
                    .await;
            }
            Err(err)
        }
    }
}

/// Parses the upload on a blocking thread (the `csv` reader is synchronous) and streams its
/// lines into COPY through a small channel: at most a few buffers are in memory at once.
/// Returns the number of data lines.
async fn copy<R>(database_url: &str, job: ImportJobId, upload: R) -> AppResult<usize>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| AppError::Unavailable(anyhow::anyhow!("cannot open a connection for the import: {e}")))?;
    let connection = tokio::spawn(connection);
    let (chunks, mut received) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let parser = tokio::task::spawn_blocking(move || parse_into(job, upload, chunks));

    let copied = async {
        let sink = client
            .copy_in::<_, bytes::Bytes>(
                "COPY import_rows (job_id, line, email, full_name, comment, tags, attributes, problem) FROM STDIN",
            )
            .await?;
        let mut sink = Box::pin(sink);
        while let Some(chunk) = received.recv().await {
            sink.send(bytes::Bytes::from(chunk)).await?;
        }
        Ok::<_, tokio_postgres::Error>(sink)
    }
    .await;
    // The parser's verdict first: a bad header or a broken upload ends the copy early.
    let parsed = parser
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("the CSV parser stopped: {e}")))?;
    let copy_failed = |e: tokio_postgres::Error| AppError::Internal(anyhow::anyhow!("the import's COPY failed: {e}"));
    let result = match (parsed, copied) {
        (Ok(total), Ok(mut sink)) => sink.as_mut().finish().await.map(|_| total).map_err(copy_failed),
        // A COPY that failed stops the parser too; its own error is the one to tell.
        (_, Err(e)) => Err(copy_failed(e)),
        (Err(err), Ok(_)) => Err(err),
    };
    drop(client);
    let _ = connection.await;
    result
}

/// The parser's side: header, then each record as one line of COPY's text format.
fn parse_into<R>(job: ImportJobId, upload: R, chunks: tokio::sync::mpsc::Sender<Vec<u8>>) -> AppResult<usize>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let source = tokio_util::io::SyncIoBridge::new(upload);
    let mut reader = csv::reader(Bom::new(RecordLimit {
        inner: source,
        in_quotes: false,
        since_break: 0,
    }));
    let header = reader
        .headers()
        .map_err(|e| AppError::bad_input("csv", format!("the header line cannot be read: {e}")))?
        .clone();
    let columns = Columns::from_header(&header)?;
    let job = job.to_string();
    let mut buffer = Vec::with_capacity(COPY_BUFFER + 4096);
    let mut lines = 0usize;
    let mut record = ::csv::StringRecord::new();
    loop {
        let (line, row) = match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(lines + 2, |p| p.line() as usize);
                match columns.cells(&record) {
                    Some(cells) => (line, Ok(cells)),
                    None => continue,
                }
            }
            Err(err) if matches!(err.kind(), ::csv::ErrorKind::Io(_)) => {
                let line = err.position().map_or(lines + 2, |p| p.line() as usize);
                return Err(AppError::bad_input(
                    "csv",
                    format!("the upload stopped at line {line}: {err}"),
                ));
            }
            Err(err) => {
                let line = err.position().map_or(lines + 2, |p| p.line() as usize);
                (line, Err(format!("not valid CSV: {err}")))
            }
        };
        lines += 1;
        if lines > MAX_LINES {
            return Err(AppError::bad_input(
                "csv",
                format!("at most {MAX_LINES} lines can be imported at once"),
            ));
        }
        copy_line(&mut buffer, &job, line, row);
        if buffer.len() >= COPY_BUFFER {
            let full = std::mem::replace(&mut buffer, Vec::with_capacity(COPY_BUFFER + 4096));
            if chunks.blocking_send(full).is_err() {
                return Err(AppError::Internal(anyhow::anyhow!("the import's COPY stopped")));
            }
        }
    }
    if !buffer.is_empty() && chunks.blocking_send(buffer).is_err() {
        return Err(AppError::Internal(anyhow::anyhow!("the import's COPY stopped")));
    }
    Ok(lines)
}

/// One `import_rows` line in COPY's text format. A cell holding NUL (which PostgreSQL text
/// cannot hold) makes the line a problem rather than the COPY an error.
fn copy_line(buffer: &mut Vec<u8>, job: &str, line: usize, row: Result<Cells, String>) {
    let row = row.and_then(|cells| {
        let nul = [&cells.email, &cells.full_name, &cells.comment, &cells.tags]
            .iter()
            .any(|cell| cell.contains('\0'))
            || cells
                .attributes
                .values()
                .any(|v| v.as_str().is_some_and(|s| s.contains('\0')));
        if nul {
            Err("a cell holds a NUL character".to_owned())
        } else {
            Ok(cells)
        }
    });
    buffer.extend_from_slice(job.as_bytes());
    buffer.push(b'\t');
    buffer.extend_from_slice(line.to_string().as_bytes());
    match row {
        Ok(cells) => {
            for cell in [&cells.email, &cells.full_name, &cells.comment, &cells.tags] {
                buffer.push(b'\t');
                escape_copy(buffer, cell);
            }
            buffer.push(b'\t');
            escape_copy(buffer, &serde_json::Value::Object(cells.attributes).to_string());
            buffer.extend_from_slice(b"\t\\N\n");
        }
        Err(problem) => {
            buffer.extend_from_slice(b"\t\t\t\t\t{}\t");
            escape_copy(buffer, &problem);
            buffer.push(b'\n');
        }
    }
}

/// A value in COPY's text format: backslash, tab, newline and carriage return escaped.
fn escape_copy(buffer: &mut Vec<u8>, value: &str) {
    for byte in value.bytes() {
        match byte {
            b'\\' => buffer.extend_from_slice(b"\\\\"),
            b'\t' => buffer.extend_from_slice(b"\\t"),
            b'\n' => buffer.extend_from_slice(b"\\n"),
            b'\r' => buffer.extend_from_slice(b"\\r"),
            other => buffer.push(other),
        }
    }
}

/// Refuses a record longer than MAX_RECORD bytes before the CSV reader buffers it whole (a
/// file with no line break, or a quoted cell that never closes, would otherwise sit in
/// memory entire). A record ends at a line break outside quotes; a doubled quote inside a
/// quoted cell toggles twice, so counting quotes is enough.
struct RecordLimit<R> {
    inner: R,
    in_quotes: bool,
    since_break: usize,
}

/// Longest record an upload may hold.
const MAX_RECORD: usize = 1024 * 1024;

impl<R: std::io::Read> std::io::Read for RecordLimit<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        for byte in &out[..n] {
            match byte {
                b'"' => self.in_quotes = !self.in_quotes,
                b'\n' if !self.in_quotes => {
                    self.since_break = 0;
                    continue;
                }
                _ => {}
            }
            self.since_break += 1;
            if self.since_break > MAX_RECORD {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("a line is longer than {} KiB", MAX_RECORD / 1024),
                ));
            }
        }
        Ok(n)
    }
}

/// Skips a UTF-8 byte order mark at the start of a reader (spreadsheets write one).
struct Bom<R> {
    inner: R,
    start: Option<Vec<u8>>,
}

impl<R: std::io::Read> Bom<R> {
    fn new(inner: R) -> Self {
        Bom { inner, start: None }
    }
}

impl<R: std::io::Read> std::io::Read for Bom<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.start.is_none() {
            let mut head = [0u8; 3];
            let mut got = 0;
            while got < 3 {
                let n = self.inner.read(&mut head[got..])?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            let head = &head[..got];
            self.start = Some(head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head).to_vec());
        }
        if let Some(start) = self.start.as_mut().filter(|s| !s.is_empty()) {
            let n = start.len().min(out.len());
            out[..n].copy_from_slice(&start[..n]);
            start.drain(..n);
            return Ok(n);
        }
        self.inner.read(out)
    }
}

/// The background half of an upload: checks and writes its staged lines.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportClients {
    pub job: ImportJobId,
}

/// What one chunk left.
enum Step {
    More,
    Finished,
}

#[derive(QueryableByName)]
struct Staged {
    #[diesel(sql_type = Integer)]
    line: i32,
    #[diesel(sql_type = Text)]
    email: String,
    #[diesel(sql_type = Text)]
    full_name: String,
    #[diesel(sql_type = Text)]
    comment: String,
    #[diesel(sql_type = Text)]
    tags: String,
    #[diesel(sql_type = Text)]
    attributes: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    problem: Option<String>,
}

impl BackgroundJob for ImportClients {
    const KIND: &'static str = "import_clients";
    type Context = DbPool;

    async fn run(&self, pool: &DbPool) -> Result<(), JobError> {
        let retry = |err: &dyn std::fmt::Display| JobError::Retry(err.to_string());
        let began = Instant::now();
        loop {
            let mut conn = pool.get().await.map_err(|e| retry(&e))?;
            let step = conn
                .transaction::<_, ChunkError, _>(async |conn| chunk(conn, self.job).await)
                .await;
            match step {
                Ok(Step::Finished) => return Ok(()),
                Ok(Step::More) if began.elapsed() >= SLICE => {
                    // The rest in a fresh run, well inside the runner's lease.
                    jobs::enqueue(&mut conn, self).await.map_err(|e| retry(&e))?;
                    return Ok(());
                }
                Ok(Step::More) => {}
                Err(ChunkError::Database(err)) => return Err(retry(&err)),
                Err(ChunkError::Fails(why)) => {
                    diesel::sql_query("DELETE FROM import_rows WHERE job_id = $1")
                        .bind::<SqlUuid, _>(self.job)
                        .execute(&mut conn)
                        .await
                        .map_err(|e| retry(&e))?;
                    diesel::update(import_jobs::table.filter(import_jobs::id.eq(self.job)))
                        .set((
                            import_jobs::status.eq(ImportStatus::Failed),
                            import_jobs::failure.eq(Some(&why)),
                            import_jobs::finished_at.eq(crate::db::now().nullable()),
                        ))
                        .execute(&mut conn)
                        .await
                        .map_err(|e| retry(&e))?;
                    return Err(JobError::Permanent(why));
                }
            }
        }
    }
}

enum ChunkError {
    Database(diesel::result::Error),
    /// The import cannot go on (said on the job).
    Fails(String),
}

impl From<diesel::result::Error> for ChunkError {
    fn from(err: diesel::result::Error) -> Self {
        ChunkError::Database(err)
    }
}

/// Checks and writes the next chunk of a job's lines, in the caller's transaction.
async fn chunk(conn: &mut AsyncPgConnection, job: ImportJobId) -> Result<Step, ChunkError> {
    // The job's row lock makes two runners on one job (a lease that ran out) take turns.
    let Some((owner, status, processed)): Option<(UserId, ImportStatus, i32)> = import_jobs::table
        .filter(import_jobs::id.eq(job))
        .select((import_jobs::owner_id, import_jobs::status, import_jobs::processed))
        .for_update()
        .first(conn)
        .await
        .optional()?
    else {
        return Ok(Step::Finished);
    };
    match status {
        ImportStatus::Done | ImportStatus::Failed => return Ok(Step::Finished),
        ImportStatus::Queued => {
            diesel::sql_query("ANALYZE import_rows").execute(conn).await?;
            // An address on several lines is imported from the first.
            diesel::sql_query(
                "UPDATE import_rows r SET problem = 'email: ' || r.email || ' is already on line ' || d.first \
                 FROM (SELECT line, min(line) OVER (PARTITION BY lower(email)) AS first FROM import_rows \
                       WHERE job_id = $1 AND problem IS NULL) d \
                 WHERE r.job_id = $1 AND r.line = d.line AND d.first < r.line",
            )
            .bind::<SqlUuid, _>(job)
            .execute(conn)
            .await?;
            diesel::update(import_jobs::table.filter(import_jobs::id.eq(job)))
                .set(import_jobs::status.eq(ImportStatus::Running))
                .execute(conn)
                .await?;
        }
        ImportStatus::Running => {}
    }

    let staged: Vec<Staged> = diesel::sql_query(
        "SELECT line, email, full_name, comment, tags, attributes, problem FROM import_rows \
         WHERE job_id = $1 ORDER BY line LIMIT $2",
    )
    .bind::<SqlUuid, _>(job)
    .bind::<diesel::sql_types::BigInt, _>(CHUNK)
    .load(conn)
    .await?;
    if staged.is_empty() {
        diesel::update(import_jobs::table.filter(import_jobs::id.eq(job)))
            .set((
                import_jobs::status.eq(ImportStatus::Done),
                import_jobs::finished_at.eq(crate::db::now().nullable()),
            ))
            .execute(conn)
            .await?;
        return Ok(Step::Finished);
    }

    let mut rows = Vec::with_capacity(staged.len());
    let mut tag_pairs = Vec::new();
    let (mut error_lines, mut error_messages) = (Vec::new(), Vec::new());
    let mut seen = std::collections::HashMap::new();
    for line in &staged {
        let checked = match &line.problem {
            Some(problem) => Err(problem.clone()),
            None => {
                let attributes = serde_json::from_str(&line.attributes).unwrap_or_default();
                let cells = Cells {
                    email: line.email.clone(),
                    full_name: line.full_name.clone(),
                    comment: line.comment.clone(),
                    tags: line.tags.clone(),
                    attributes,
                };
                // Always as if the file had attribute columns: an empty set changes nothing.
                csv::check(&cells, true)
            }
        };
        // Two spellings of one address the staging could not see as one (a domain in
        // Unicode and in punycode) must not reach one upsert twice.
        let checked = checked.and_then(|(fields, tags)| match seen.get(&fields.email.to_lowercase()) {
            Some(first) => Err(format!("email: {} is already on line {first}", fields.email)),
            None => {
                seen.insert(fields.email.to_lowercase(), line.line);
                Ok((fields, tags))
            }
        });
        match checked {
            Ok((fields, tags)) => {
                if !tags.is_empty() {
                    tag_pairs.push((fields.email.clone(), tags));
                }
                rows.push(fields);
            }
            Err(message) => {
                error_lines.push(line.line);
                error_messages.push(message);
            }
        }
    }
    let (created, updated) = model::import(conn, owner, &rows).await?;
    if !tags::import(conn, owner, &tag_pairs).await? {
        return Err(ChunkError::Fails(format!(
            "the file's tags would make more than {} tags",
            tags::MAX_TAGS
        )));
    }
    diesel::sql_query(
        "INSERT INTO import_errors (job_id, line, message) SELECT $1, l, m FROM unnest($2::int4[], $3::text[]) AS t(l, m) \
         ON CONFLICT DO NOTHING",
    )
    .bind::<SqlUuid, _>(job)
    .bind::<Array<Integer>, _>(&error_lines)
    .bind::<Array<Text>, _>(&error_messages)
    .execute(conn)
    .await?;
    let last = staged.last().map_or(0, |l| l.line);
    diesel::sql_query("DELETE FROM import_rows WHERE job_id = $1 AND line <= $2")
        .bind::<SqlUuid, _>(job)
        .bind::<Integer, _>(last)
        .execute(conn)
        .await?;
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    // A bulk load outruns the statistics (and autovacuum, when it is slow or off): every
    // ANALYZE_EVERY lines the planner learns the tables' new sizes, so that the upserts'
    // and the tags' joins keep their index plans, and audience sizes theirs afterwards.
    let processed = usize::try_from(processed).unwrap_or(0);
    if (processed + staged.len()) / ANALYZE_EVERY != processed / ANALYZE_EVERY {
        diesel::sql_query("ANALYZE clients, client_tags").execute(conn).await?;
    }
    diesel::update(import_jobs::table.filter(import_jobs::id.eq(job)))
        .set((
            import_jobs::processed.eq(import_jobs::processed + count(staged.len())),
            import_jobs::created.eq(import_jobs::created + count(created)),
            import_jobs::updated.eq(import_jobs::updated + count(updated)),
            import_jobs::error_count.eq(import_jobs::error_count + count(error_lines.len())),
        ))
        .execute(conn)
        .await?;
    Ok(Step::More)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn copy_lines_escape_what_the_text_format_reads_as_structure() {
        let mut buffer = Vec::new();
        let cells = Cells {
            email: "a@example.com".into(),
            full_name: "Tab\there\\back\nline\rcr".into(),
            ..Cells::default()
        };
        copy_line(&mut buffer, "job", 7, Ok(cells));
        assert_eq!(
            String::from_utf8(buffer).unwrap(),
            "job\t7\ta@example.com\tTab\\there\\\\back\\nline\\rcr\t\t\t{}\t\\N\n"
        );
        let mut buffer = Vec::new();
        let nul = Cells {
            email: "a\0@example.com".into(),
            ..Cells::default()
        };
        copy_line(&mut buffer, "job", 8, Ok(nul));
        assert_eq!(
            String::from_utf8(buffer).unwrap(),
            "job\t8\t\t\t\t\t{}\ta cell holds a NUL character\n"
        );
    }

    #[test]
    fn a_record_longer_than_the_limit_is_refused_before_it_is_buffered() {
        let read_all = |input: Vec<u8>| {
            let mut out = Vec::new();
            RecordLimit {
                inner: input.as_slice(),
                in_quotes: false,
                since_break: 0,
            }
            .read_to_end(&mut out)
            .map(|_| out.len())
        };
        // Many short records, and a quoted cell with line breaks and doubled quotes: fine.
        let mut fine = b"email,full_name\n".repeat(200_000);
        fine.extend_from_slice(b"a@b.c,\"x\"\"y\nz\"\n");
        assert!(read_all(fine).is_ok());
        // One line with no break, and a quoted cell that never closes: refused.
        assert!(read_all(vec![b'a'; MAX_RECORD + 1]).is_err());
        let mut open = b"a@b.c,\"".to_vec();
        open.extend(b"line\n".repeat(MAX_RECORD / 4));
        assert!(read_all(open).is_err());
    }

    #[test]
    fn a_byte_order_mark_is_skipped_and_nothing_else() {
        for (input, expected) in [
            (&b"\xEF\xBB\xBFemail"[..], &b"email"[..]),
            (b"email", b"email"),
            (b"ab", b"ab"),
            (b"", b""),
        ] {
            let mut out = Vec::new();
            Bom::new(input).read_to_end(&mut out).unwrap();
            assert_eq!(out, expected);
        }
    }
}
