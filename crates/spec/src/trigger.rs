//! Triggers (formats.md §7): what starts a pipeline by itself, modelled on
//! CodePipeline V2's triggers.
//!
//! - A [`GitTrigger`] watches the repository of one source action of the
//!   first stage. A push starts the pipeline when its branch (or tag)
//!   matches the [`PushFilter`] and, for a branch push with `file_paths`, at
//!   least one changed file matches too; a pull request starts it when its
//!   event and base branch match the [`PullRequestFilter`]. News of a push
//!   arrives by webhook, by polling, or both.
//! - A [`ScheduleTrigger`] starts it at the times of a cron expression in an
//!   IANA time zone, on the sources' branch heads.
//! - A [`PipelineTrigger`] starts it when an execution of another pipeline
//!   ends with one of the given statuses.
//!
//! A pipeline without `triggers` runs only when someone starts it.
//!
//! The glob patterns, cron expressions and time zones here are validated by
//! compiling them, and each newtype keeps what it compiled, so the crate that
//! matches and schedules (gantry-triggers) works on values that cannot fail.
//! Time zones come from the IANA database compiled into gantry (jiff's
//! bundled copy), not from the host's files: validating reads nothing, and a
//! schedule fires at the same instants on every host.

use std::fmt;
use std::time::Duration;

use crate::location::Location;
use crate::names::{ActionName, PipelineName};

pub(crate) mod decode;

/// One item of the pipeline's `triggers` list.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub kind: TriggerKind,
    /// Where the item is written.
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TriggerKind {
    Git(GitTrigger),
    Schedule(ScheduleTrigger),
    Pipeline(PipelineTrigger),
}

impl TriggerKind {
    /// The item's key as written in the file: `git`, `schedule` or `pipeline`.
    pub fn type_name(&self) -> &'static str {
        match self {
            TriggerKind::Git(_) => "git",
            TriggerKind::Schedule(_) => "schedule",
            TriggerKind::Pipeline(_) => "pipeline",
        }
    }
}

/// Starts the pipeline on pushes (and pull requests) to the repository of a
/// source action.
#[derive(Debug, Clone, PartialEq)]
pub struct GitTrigger {
    /// A source action of the first stage; its `repository` is watched, and
    /// the execution's source is pinned to the commit that triggered it.
    pub source: ActionName,
    /// Which pushes start the pipeline. When the file gives neither `push`
    /// nor `pull_request`, this is pushes to the source action's `branch`.
    pub push: Option<PushFilter>,
    /// Which pull-request events start the pipeline (webhooks only).
    pub pull_request: Option<PullRequestFilter>,
    /// How often to look for new commits (`git ls-remote`); `None`: never.
    pub poll: Option<Duration>,
    /// Where the forge's webhook deliveries are checked; `None`: no webhook.
    pub webhook: Option<GitWebhook>,
}

/// Which pushes start a pipeline. A push matches when its branch matches
/// `branches` (and, if `file_paths` is given, at least one changed file
/// matches it), or when its tag matches `tags`. At least one of `branches`
/// and `tags` is present; `file_paths` only with `branches`.
#[derive(Debug, Clone, PartialEq)]
pub struct PushFilter {
    /// Branch names (`main`, not `refs/heads/main`).
    pub branches: Option<GlobFilter>,
    /// Tag names (`v1.2`, not `refs/tags/v1.2`).
    pub tags: Option<GlobFilter>,
    /// Paths relative to the repository's root.
    pub file_paths: Option<GlobFilter>,
}

/// Include and exclude globs: a name matches when it matches an include (or
/// there are no includes) and no exclude. Excludes win. At least one list is
/// given, and a given `includes` is not empty.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobFilter {
    pub includes: Vec<GlobPattern>,
    pub excludes: Vec<GlobPattern>,
}

/// Which pull-request events start a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct PullRequestFilter {
    /// Not empty, no duplicates; default `[opened, updated]`.
    pub events: Vec<PullRequestEvent>,
    /// Matched against the pull request's base (target) branch, as GitHub
    /// Actions and CodePipeline do; `None`: any.
    pub branches: Option<GlobFilter>,
}

/// A pull request's event, as CodePipeline V2 names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PullRequestEvent {
    /// Opened or reopened.
    Opened,
    /// New commits on its head branch.
    Updated,
    /// Closed, merged or not.
    Closed,
}

impl PullRequestEvent {
    pub const ALL: [PullRequestEvent; 3] = [
        PullRequestEvent::Opened,
        PullRequestEvent::Updated,
        PullRequestEvent::Closed,
    ];

    /// As written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            PullRequestEvent::Opened => "opened",
            PullRequestEvent::Updated => "updated",
            PullRequestEvent::Closed => "closed",
        }
    }
}

/// The webhook of a [`GitTrigger`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitWebhook {
    pub provider: WebhookProvider,
    /// The name of the parameter whose value is the shared secret (never the
    /// secret itself).
    pub secret_parameter: String,
}

/// Whose delivery format and signature scheme a webhook uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WebhookProvider {
    /// `X-GitHub-Event`, `X-Hub-Signature-256`.
    Github,
    /// `X-Gitlab-Event`, `X-Gitlab-Token`.
    Gitlab,
    /// Gitea and Forgejo: `X-Gitea-Event`, `X-Gitea-Signature`.
    Gitea,
    /// gantry's own JSON body: `X-Gantry-Signature-256` (formats.md §7).
    Generic,
}

impl WebhookProvider {
    pub const ALL: [WebhookProvider; 4] = [
        WebhookProvider::Github,
        WebhookProvider::Gitlab,
        WebhookProvider::Gitea,
        WebhookProvider::Generic,
    ];

    /// As written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookProvider::Github => "github",
            WebhookProvider::Gitlab => "gitlab",
            WebhookProvider::Gitea => "gitea",
            WebhookProvider::Generic => "generic",
        }
    }
}

/// Starts the pipeline at the times of a cron expression.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleTrigger {
    pub cron: CronExpression,
    /// Default UTC.
    pub timezone: TimeZoneName,
    /// The source action whose branch head the execution runs on; `None`:
    /// every source action takes its own branch's head.
    pub source: Option<ActionName>,
}

/// Starts the pipeline when an execution of another pipeline ends.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineTrigger {
    /// The upstream pipeline; not this one. Whether it exists is known only
    /// to the server, which holds the other pipelines.
    pub name: PipelineName,
    /// The final statuses that start this pipeline; not empty, default
    /// `[Succeeded]`.
    pub statuses: Vec<UpstreamStatus>,
}

/// The final statuses of an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UpstreamStatus {
    Succeeded,
    Failed,
    Stopped,
    Superseded,
}

impl UpstreamStatus {
    pub const ALL: [UpstreamStatus; 4] = [
        UpstreamStatus::Succeeded,
        UpstreamStatus::Failed,
        UpstreamStatus::Stopped,
        UpstreamStatus::Superseded,
    ];

    /// As written in the file and in the execution JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamStatus::Succeeded => "Succeeded",
            UpstreamStatus::Failed => "Failed",
            UpstreamStatus::Stopped => "Stopped",
            UpstreamStatus::Superseded => "Superseded",
        }
    }
}

/// A glob over branch names, tag names or file paths, compiled as gantry
/// matches it: `*` and `?` stay within one `/`-separated part, `**` spans
/// parts (`**/*.md` matches `README.md` and `docs/a.md`), `[abc]` and
/// `{a,b}` as usual, `\` escapes. Case-sensitive, as git is.
#[derive(Clone)]
pub struct GlobPattern {
    text: String,
    glob: globset::Glob,
}

impl GlobPattern {
    /// Compiles a pattern; the error says why it is not one.
    pub fn new(text: &str) -> Result<GlobPattern, String> {
        if text.is_empty() {
            return Err("a pattern cannot be empty".to_owned());
        }
        globset::GlobBuilder::new(text)
            .literal_separator(true)
            .backslash_escape(true)
            .empty_alternates(false)
            .build()
            .map(|glob| GlobPattern {
                text: text.to_owned(),
                glob,
            })
            .map_err(|err| format!("invalid glob `{text}`: {}", err.kind()))
    }

    /// A pattern that matches exactly `name` (its glob characters escaped).
    pub fn literal(name: &str) -> Result<GlobPattern, String> {
        GlobPattern::new(&globset::escape(name))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The compiled glob, for building a `globset::GlobSet`.
    pub fn glob(&self) -> &globset::Glob {
        &self.glob
    }
}

impl PartialEq for GlobPattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for GlobPattern {}

/// Shows the pattern as written; the compiled form says nothing more.
impl fmt::Debug for GlobPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("GlobPattern").field(&self.text).finish()
    }
}

/// A cron expression of five fields (minute, hour, day of month, month, day
/// of week), as Vixie cron reads them: names (`MON`, `JAN`), ranges, lists,
/// steps (`*/15`, `0-30/10`), `L`, `W` and `#` as croner extends them, and
/// `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`. When both day
/// fields are restricted, a day matching either runs. Valid only if it
/// fires at least once.
#[derive(Clone)]
pub struct CronExpression {
    text: String,
    cron: croner::Cron,
}

impl CronExpression {
    /// Compiles an expression; the error says why it is not one.
    pub fn new(text: &str) -> Result<CronExpression, String> {
        let fields = text.split_whitespace().count();
        if fields != 5 && !text.trim_start().starts_with('@') {
            return Err(format!(
                "cron expression `{text}` has {fields} fields; it needs five: minute hour day-of-month month day-of-week"
            ));
        }
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(text)
            .map_err(|err| format!("invalid cron expression `{text}`: {err}"))?;
        // `0 0 30 2 *` parses but never fires. Any expression that fires at
        // all does so within a few years of any date, and croner's search
        // gives up after that, so one search from a fixed date tells.
        if cron
            .find_next_occurrence(
                &Zoned(jiff::Timestamp::UNIX_EPOCH.to_zoned_datetime(jiff::tz::TimeZone::UTC)),
                false,
            )
            .is_err()
        {
            return Err(format!(
                "cron expression `{text}` never fires (no such day in any year)"
            ));
        }
        Ok(CronExpression {
            text: text.to_owned(),
            cron,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The compiled expression.
    pub fn cron(&self) -> &croner::Cron {
        &self.cron
    }
}

/// A time in a zone, as croner searches: jiff 1's `ZonedDateTime` (croner's
/// own jiff support is for jiff 0.2). A wall-clock time the zone skips is a
/// gap, one it repeats is ambiguous (croner applies Vixie cron's rules).
#[derive(Clone)]
pub struct Zoned(pub jiff::ZonedDateTime);

impl croner::time::CronDateTime for Zoned {
    fn to_civil(&self) -> croner::time::CivilDateTime {
        let t = self.0.datetime();
        // jiff keeps every part in range, so croner may take them unchecked.
        croner::time::CivilDateTime::new(
            croner::time::CivilDate::from_parts_unchecked(
                i32::from(t.year()),
                t.month().unsigned_abs().into(),
                t.day().unsigned_abs().into(),
            ),
            croner::time::CivilTime::from_parts_unchecked(
                t.hour().unsigned_abs().into(),
                t.minute().unsigned_abs().into(),
                t.second().unsigned_abs().into(),
            ),
        )
    }

    fn civil_weekday(&self) -> croner::time::Weekday {
        croner::time::Weekday::from_days_from_sunday(
            self.0
                .weekday()
                .to_sunday_zero_offset()
                .unsigned_abs()
                .into(),
        )
    }

    fn resolve_civil(
        &self,
        civil: croner::time::CivilDateTime,
    ) -> Result<croner::time::Resolution<Self>, croner::errors::CronError> {
        use croner::errors::CronError;
        use croner::time::Resolution;
        use jiff::tz::AmbiguousOffset;

        let part = |n: u32| i8::try_from(n).map_err(|_| CronError::InvalidDate);
        let year = i16::try_from(civil.year()).map_err(|_| CronError::InvalidDate)?;
        let wall = jiff::civil::DateTime::new(
            year,
            part(civil.month())?,
            part(civil.day())?,
            part(civil.hour())?,
            part(civil.minute())?,
            part(civil.second())?,
            0,
        )
        .map_err(|_| CronError::InvalidDate)?;
        let ambiguous = self.0.time_zone().to_ambiguous_zoned_datetime(wall);
        Ok(match ambiguous.offset() {
            AmbiguousOffset::Unambiguous { .. } => Resolution::Single(Zoned(
                ambiguous
                    .unambiguous()
                    .map_err(|_| CronError::InvalidTime)?,
            )),
            AmbiguousOffset::Fold { .. } => Resolution::Ambiguous(
                Zoned(
                    ambiguous
                        .clone()
                        .earlier()
                        .map_err(|_| CronError::InvalidTime)?,
                ),
                Zoned(ambiguous.later().map_err(|_| CronError::InvalidTime)?),
            ),
            AmbiguousOffset::Gap { .. } => Resolution::Gap,
        })
    }

    fn checked_add_seconds(&self, seconds: i64) -> Option<Self> {
        self.0
            .checked_add(jiff::SignedDuration::from_secs(seconds))
            .ok()
            .map(Zoned)
    }

    fn cmp_instant(&self, other: &Self) -> std::cmp::Ordering {
        self.0.timestamp().cmp(&other.0.timestamp())
    }
}

impl PartialEq for CronExpression {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for CronExpression {}

impl fmt::Debug for CronExpression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CronExpression").field(&self.text).finish()
    }
}

/// An IANA time zone (`Asia/Tokyo`, `Europe/Berlin`, `UTC`) from the
/// database compiled into gantry.
#[derive(Clone)]
pub struct TimeZoneName {
    name: String,
    time_zone: jiff::tz::TimeZone,
}

impl TimeZoneName {
    /// Looks a name up; case does not matter, and the name is kept as the
    /// database spells it.
    pub fn new(name: &str) -> Result<TimeZoneName, String> {
        let time_zone = jiff::tz::TimeZoneDatabase::bundled()
            .get(name)
            .map_err(|_| {
                format!(
                    "unknown time zone `{name}`: use an IANA name such as `UTC`, `Europe/Berlin` or `Asia/Tokyo`"
                )
            })?;
        let name = time_zone.iana_name().unwrap_or(name).to_owned();
        Ok(TimeZoneName { name, time_zone })
    }

    /// Coordinated Universal Time, the default.
    pub fn utc() -> TimeZoneName {
        TimeZoneName {
            name: "UTC".to_owned(),
            time_zone: jiff::tz::TimeZone::UTC,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The zone's rules (offsets and daylight-saving transitions).
    pub fn time_zone(&self) -> &jiff::tz::TimeZone {
        &self.time_zone
    }
}

impl PartialEq for TimeZoneName {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for TimeZoneName {}

impl fmt::Debug for TimeZoneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TimeZoneName").field(&self.name).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_keep_to_one_part_unless_doubled() {
        let matches = |pattern: &str, name: &str| {
            GlobPattern::new(pattern)
                .expect("pattern")
                .glob()
                .compile_matcher()
                .is_match(name)
        };
        assert!(matches("release/*", "release/1.0"));
        assert!(!matches("release/*", "release/1.0/hotfix"));
        assert!(matches("release/**", "release/1.0/hotfix"));
        assert!(matches("**/*.md", "README.md"));
        assert!(matches("**/*.md", "docs/guide/a.md"));
        assert!(matches(
            "services/catalog/**",
            "services/catalog/src/main.rs"
        ));
        assert!(!matches(
            "services/catalog/**",
            "services/orders/src/main.rs"
        ));
        assert!(matches("v*", "v1.2.3"));
        assert!(!matches("Main", "main"));
        assert!(GlobPattern::new("a[").is_err());
        assert!(GlobPattern::new("").is_err());
        let literal = GlobPattern::literal("feature/[x]*").expect("literal");
        assert!(literal.glob().compile_matcher().is_match("feature/[x]*"));
        assert!(!literal.glob().compile_matcher().is_match("feature/x"));
    }

    #[test]
    fn cron_expressions_have_five_fields_and_must_fire() {
        for good in ["0 3 * * *", "*/15 * * * MON-FRI", "@daily", "0 0 29 2 *"] {
            assert!(CronExpression::new(good).is_ok(), "{good} was refused");
        }
        for bad in [
            "0 3 * *",
            "0 0 3 * * *",
            "61 * * * *",
            "5/5 * * * *",
            "",
            "0 0 30 2 *",
        ] {
            assert!(CronExpression::new(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn time_zones_come_from_the_bundled_database() {
        assert_eq!(
            TimeZoneName::new("Asia/Tokyo").map(|t| t.name),
            Ok("Asia/Tokyo".to_owned())
        );
        assert_eq!(
            TimeZoneName::new("asia/tokyo").map(|t| t.name),
            Ok("Asia/Tokyo".to_owned())
        );
        assert_eq!(TimeZoneName::new("UTC"), Ok(TimeZoneName::utc()));
        assert!(TimeZoneName::new("Mars/Olympus").is_err());
        assert!(TimeZoneName::new("+09:00").is_err());
    }
}
