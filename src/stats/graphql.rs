//! The statistics part of the GraphQL API.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_graphql::{ComplexObject, Context, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::model::{self, HomeCounts, Of};
use crate::accounts::viewer;
use crate::app::AppState;
use crate::blog::graphql::BlogPost;
use crate::error::AppError;
use crate::graphql::ids::parse_id;
use crate::mailings::access::read_scope;

/// How long an instance reuses the home page's counts: whole-table counts then run at most
/// this often, however many people open the home page.
const HOME_STATS_TTL: Duration = Duration::from_secs(5);

/// The home page's counts as last computed by this instance (schema data).
#[derive(Default)]
pub struct HomeStatsCache(Mutex<Option<(Instant, HomeCounts)>>);

/// Numbers for the home page. Public.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct HomeStats {
    pub mailings_total: i32,
    /// Running (a run has started, not completed) and not paused.
    pub mailings_active: i32,
    /// Distinct client e-mail addresses.
    pub unique_clients: i32,
}

#[ComplexObject]
impl HomeStats {
    /// Published posts picked at random (at most 20).
    async fn random_posts(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 3)] count: Option<i32>,
    ) -> async_graphql::Result<Vec<BlogPost>> {
        let count = i64::from(count.unwrap_or(3).clamp(0, 20));
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let posts = crate::blog::model::random_published(&mut conn, count).await?;
        Ok(posts.into_iter().map(BlogPost).collect())
    }
}

/// One calendar day of `dailyStats`.
#[derive(SimpleObject)]
pub struct DayStats {
    /// YYYY-MM-DD in the requested time zone.
    pub day: String,
    pub attempts: i32,
    /// Attempts with SUCCESS.
    pub succeeded: i32,
    /// Attempts with TEMPORARY_FAILURE or PERMANENT_FAILURE.
    pub failed: i32,
    /// Deliveries that reached SENT that day.
    pub sent: i32,
}

/// Longest range `dailyStats` covers.
const MAX_DAYS: i64 = 400;

fn int(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[derive(Default)]
pub struct StatsQuery;

#[Object]
impl StatsQuery {
    /// Service-wide numbers for the home page (recomputed at most every few seconds). Public.
    async fn home_stats(&self, ctx: &Context<'_>) -> async_graphql::Result<HomeStats> {
        let cache = ctx.data_unchecked::<HomeStatsCache>();
        let cached = *cache.0.lock().expect("not poisoned");
        let counts = match cached {
            Some((at, counts)) if at.elapsed() < HOME_STATS_TTL => counts,
            _ => {
                let mut conn = AppState::from_ctx(ctx).conn().await?;
                let counts = model::home_counts(&mut conn).await?;
                *cache.0.lock().expect("not poisoned") = Some((Instant::now(), counts));
                counts
            }
        };
        Ok(HomeStats {
            mailings_total: int(counts.mailings_total),
            mailings_active: int(counts.mailings_active),
            unique_clients: int(counts.unique_clients),
        })
    }

    /// Per calendar day of `timeZone` (IANA name, default UTC), every day overlapping
    /// [from, to) at most 400 days: attempts by outcome and deliveries sent, for the
    /// viewer's own mailings or one mailing the viewer may see.
    async fn daily_stats(
        &self,
        ctx: &Context<'_>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        mailing_id: Option<ID>,
        time_zone: Option<String>,
    ) -> async_graphql::Result<Vec<DayStats>> {
        let viewer = viewer(ctx)?;
        if to <= from {
            return Err(AppError::bad_input("to", "must be after `from`").into());
        }
        if (to - from).num_days() > MAX_DAYS {
            return Err(AppError::bad_input("to", format!("at most {MAX_DAYS} days at once")).into());
        }
        let time_zone = time_zone.unwrap_or_else(|| "UTC".to_owned());
        if time_zone.parse::<chrono_tz::Tz>().is_err() {
            return Err(AppError::bad_input(
                "timeZone",
                format!("`{time_zone}` is not an IANA time zone name such as Europe/Berlin"),
            )
            .into());
        }
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let of = match mailing_id {
            None => Of::Owner(viewer.user_id),
            Some(id) => {
                let id = parse_id(&id).ok_or(AppError::NotFound)?;
                crate::mailings::model::find(&mut conn, read_scope(viewer), id)
                    .await?
                    .ok_or(AppError::NotFound)?;
                Of::Mailing(id)
            }
        };
        let days = model::daily(&mut conn, of, from, to, &time_zone).await?;
        Ok(days
            .into_iter()
            .map(|d| DayStats {
                day: d.day,
                attempts: int(d.attempts),
                succeeded: int(d.succeeded),
                failed: int(d.failed),
                sent: int(d.sent),
            })
            .collect())
    }
}
