//! Whether a push or a pull request starts a pipeline, by the filters of its
//! `git` trigger (formats.md §7).
//!
//! A push starts the pipeline when:
//! - it does not delete its ref;
//! - its branch matches `branches` (and, if `file_paths` is given, at least
//!   one changed file matches `file_paths`), or its tag matches `tags`.
//!
//! A filter matches a name that matches one of its includes (or any name if
//! it has none) and none of its excludes: excludes win. Other refs
//! (`refs/notes/…`) never match.
//!
//! Changed files come with webhook deliveries of most forges, but not
//! always (a created branch, a forced push, more commits than the forge
//! lists, polling): then [`Verdict::NeedChangedFiles`] asks the caller to
//! work them out (`git diff --name-only BEFORE AFTER` in its mirror) and ask
//! again with them. A pull request starts the pipeline when its event is
//! one of `events` and its base branch matches `branches`.

use std::fmt;

use gantry_spec::trigger::{
    GitTrigger, GlobFilter, PullRequestEvent, PullRequestFilter, PushFilter,
};

use crate::git::GitRef;
use crate::webhook::{PullRequest, Push, WebhookEvent};

/// The answer to "does this start the pipeline?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Start,
    Skip(Skip),
    /// The ref matches and `file_paths` decides, but the changed files are
    /// not known: ask again with them.
    NeedChangedFiles,
}

/// Why an event does not start the pipeline; displays as a sentence for
/// `gantry triggers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The trigger has no `push` filter (only `pull_request`).
    PushesNotWatched,
    /// The trigger has no `pull_request` filter.
    PullRequestsNotWatched,
    /// The push deleted its ref.
    RefDeleted {
        git_ref: String,
    },
    BranchNotMatched {
        branch: String,
    },
    TagNotMatched {
        tag: String,
    },
    /// Neither a branch nor a tag.
    OtherRef {
        git_ref: String,
    },
    /// No changed file matches `file_paths` (or nothing changed).
    NoMatchingFile {
        branch: String,
    },
    EventNotWatched {
        event: PullRequestEvent,
    },
    BaseBranchNotMatched {
        branch: String,
    },
    /// A ping, or an event that never starts pipelines.
    NotATrigger,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::PushesNotWatched => f.write_str("the trigger watches pull requests, not pushes"),
            Skip::PullRequestsNotWatched => {
                f.write_str("the trigger watches pushes, not pull requests")
            }
            Skip::RefDeleted { git_ref } => write!(f, "{git_ref} was deleted"),
            Skip::BranchNotMatched { branch } => {
                write!(f, "branch `{branch}` does not match the branch filter")
            }
            Skip::TagNotMatched { tag } => write!(f, "tag `{tag}` does not match the tag filter"),
            Skip::OtherRef { git_ref } => write!(f, "{git_ref} is neither a branch nor a tag"),
            Skip::NoMatchingFile { branch } => write!(
                f,
                "no file changed on branch `{branch}` matches the file path filter"
            ),
            Skip::EventNotWatched { event } => {
                write!(f, "pull-request event `{}` is not watched", event.as_str())
            }
            Skip::BaseBranchNotMatched { branch } => write!(
                f,
                "the pull request's base branch `{branch}` does not match the branch filter"
            ),
            Skip::NotATrigger => f.write_str("the event does not start pipelines"),
        }
    }
}

/// A [`GlobFilter`] ready to match.
#[derive(Debug, Clone)]
struct Globs {
    /// Empty: every name is included.
    includes: Vec<globset::GlobMatcher>,
    excludes: Vec<globset::GlobMatcher>,
}

impl Globs {
    fn new(filter: &GlobFilter) -> Globs {
        let compile = |patterns: &[gantry_spec::trigger::GlobPattern]| {
            patterns
                .iter()
                .map(|p| p.glob().compile_matcher())
                .collect()
        };
        Globs {
            includes: compile(&filter.includes),
            excludes: compile(&filter.excludes),
        }
    }

    fn is_match(&self, name: &str) -> bool {
        (self.includes.is_empty() || self.includes.iter().any(|g| g.is_match(name)))
            && !self.excludes.iter().any(|g| g.is_match(name))
    }
}

/// A [`PushFilter`] ready to match.
#[derive(Debug, Clone)]
pub struct PushMatcher {
    branches: Option<Globs>,
    tags: Option<Globs>,
    file_paths: Option<Globs>,
}

impl PushMatcher {
    pub fn new(filter: &PushFilter) -> PushMatcher {
        PushMatcher {
            branches: filter.branches.as_ref().map(Globs::new),
            tags: filter.tags.as_ref().map(Globs::new),
            file_paths: filter.file_paths.as_ref().map(Globs::new),
        }
    }

    /// Whether a push to this ref can start the pipeline, before looking at
    /// files. A poller watches only these refs.
    pub fn ref_matches(&self, git_ref: &GitRef) -> bool {
        self.check_ref(git_ref).is_none()
    }

    /// Whether a push to this ref is decided by its changed files too.
    pub fn needs_changed_files(&self, git_ref: &GitRef) -> bool {
        matches!(git_ref, GitRef::Branch(_)) && self.file_paths.is_some()
    }

    /// Decides a push: its ref, whether it deleted the ref, and its changed
    /// files (paths relative to the repository's root) when known.
    pub fn check(
        &self,
        git_ref: &GitRef,
        deleted: bool,
        changed_files: Option<&[String]>,
    ) -> Verdict {
        if deleted {
            return Verdict::Skip(Skip::RefDeleted {
                git_ref: git_ref.full_name(),
            });
        }
        if let Some(skip) = self.check_ref(git_ref) {
            return Verdict::Skip(skip);
        }
        let (GitRef::Branch(branch), Some(paths)) = (git_ref, &self.file_paths) else {
            return Verdict::Start;
        };
        match changed_files {
            None => Verdict::NeedChangedFiles,
            Some(files) if files.iter().any(|f| paths.is_match(f)) => Verdict::Start,
            Some(_) => Verdict::Skip(Skip::NoMatchingFile {
                branch: branch.clone(),
            }),
        }
    }

    fn check_ref(&self, git_ref: &GitRef) -> Option<Skip> {
        match git_ref {
            GitRef::Branch(branch) => {
                let matched = self.branches.as_ref().is_some_and(|g| g.is_match(branch));
                (!matched).then(|| Skip::BranchNotMatched {
                    branch: branch.clone(),
                })
            }
            GitRef::Tag(tag) => {
                let matched = self.tags.as_ref().is_some_and(|g| g.is_match(tag));
                (!matched).then(|| Skip::TagNotMatched { tag: tag.clone() })
            }
            GitRef::Other(full) => Some(Skip::OtherRef {
                git_ref: full.clone(),
            }),
        }
    }
}

/// A [`PullRequestFilter`] ready to match.
#[derive(Debug, Clone)]
pub struct PullRequestMatcher {
    events: Vec<PullRequestEvent>,
    branches: Option<Globs>,
}

impl PullRequestMatcher {
    pub fn new(filter: &PullRequestFilter) -> PullRequestMatcher {
        PullRequestMatcher {
            events: filter.events.clone(),
            branches: filter.branches.as_ref().map(Globs::new),
        }
    }

    /// Decides a pull-request event by its kind and its base branch.
    pub fn check(&self, event: PullRequestEvent, base_branch: &str) -> Verdict {
        if !self.events.contains(&event) {
            return Verdict::Skip(Skip::EventNotWatched { event });
        }
        match &self.branches {
            Some(globs) if !globs.is_match(base_branch) => {
                Verdict::Skip(Skip::BaseBranchNotMatched {
                    branch: base_branch.to_owned(),
                })
            }
            _ => Verdict::Start,
        }
    }
}

/// A whole `git` trigger ready to match: its push and pull-request filters.
#[derive(Debug, Clone)]
pub struct GitTriggerMatcher {
    push: Option<PushMatcher>,
    pull_request: Option<PullRequestMatcher>,
}

impl GitTriggerMatcher {
    pub fn new(trigger: &GitTrigger) -> GitTriggerMatcher {
        GitTriggerMatcher {
            push: trigger.push.as_ref().map(PushMatcher::new),
            pull_request: trigger.pull_request.as_ref().map(PullRequestMatcher::new),
        }
    }

    /// The push filter, for a poller (`ref_matches`, `needs_changed_files`).
    pub fn push(&self) -> Option<&PushMatcher> {
        self.push.as_ref()
    }

    /// Decides a push delivered by webhook, with the files it lists.
    pub fn check_push(&self, push: &Push) -> Verdict {
        match &self.push {
            None => Verdict::Skip(Skip::PushesNotWatched),
            Some(matcher) => {
                matcher.check(&push.git_ref, push.deleted(), push.changed_files.as_deref())
            }
        }
    }

    /// Decides a push once its changed files are known (after
    /// [`Verdict::NeedChangedFiles`]).
    pub fn check_push_with_files(&self, push: &Push, changed_files: &[String]) -> Verdict {
        match &self.push {
            None => Verdict::Skip(Skip::PushesNotWatched),
            Some(matcher) => matcher.check(&push.git_ref, push.deleted(), Some(changed_files)),
        }
    }

    pub fn check_pull_request(&self, pull_request: &PullRequest) -> Verdict {
        match &self.pull_request {
            None => Verdict::Skip(Skip::PullRequestsNotWatched),
            Some(matcher) => matcher.check(pull_request.action, &pull_request.base_branch),
        }
    }

    /// Decides any delivered event; pings and ignored events never start.
    pub fn check_event(&self, event: &WebhookEvent) -> Verdict {
        match event {
            WebhookEvent::Push(push) => self.check_push(push),
            WebhookEvent::PullRequest(pull_request) => self.check_pull_request(pull_request),
            WebhookEvent::Ping | WebhookEvent::Ignored { .. } => Verdict::Skip(Skip::NotATrigger),
        }
    }
}
