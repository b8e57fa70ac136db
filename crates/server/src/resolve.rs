//! Resolving `#{namespace.NAME}` in every string field of an action, just
//! before it starts (CodePipeline resolves variables at the same moment).
//!
//! Shell commands are the exception: a value pasted into command text would
//! be parsed as shell, so a commit message like `fix"; touch /tmp/x; echo "`
//! would run `touch`. In a shell action's `commands`, each reference becomes
//! an expansion of an environment variable holding its value,
//! `${GANTRY_REF_<namespace>_<NAME>}` (every character outside
//! `[A-Za-z0-9_]` made `_`), and the value goes into the action's
//! environment. The shell expands a variable but never parses what it holds:
//!
//! - inside double quotes (`"#{Source.CommitMessage}"`) the value is one
//!   word, verbatim, as before;
//! - inside single quotes, where the shell expands nothing, the quote is
//!   closed around the expansion (`'a #{x.Y} b'` becomes
//!   `'a '"${GANTRY_REF_x_Y}"' b'`), so the value is still printed verbatim;
//! - unquoted, the expansion is split into words and globbed like any
//!   unquoted `$VAR`, but never run: quote references whose values may hold
//!   spaces.
//!
//! The quoting context is told by a small lexer (quotes, backslashes, `$(…)`
//! and backticks); it does not know here-documents, where a reference
//! expands in an unquoted one (`<<EOF`) and stays `${…}` in a quoted one
//! (`<<'EOF'`). Whatever the lexer gets wrong, a value is never parsed as
//! shell; at worst it is printed as `${GANTRY_REF_…}`.
//!
//! Buildspec files are not resolved at all (as on CodeBuild); `env` values,
//! artifact names and every other field are substituted as text. Variables
//! named `GANTRY_REF_*` are reserved for these values: an action declaring
//! one in its `env` fails.

use std::collections::BTreeMap;

use gantry_spec::buildspec::ArtifactsSpec;
use gantry_spec::pipeline::{Action, ActionKind};
use gantry_spec::template::{VarRef, references, resolve};

/// The prefix of the variables that carry `#{…}` values into shell commands.
pub(crate) const REF_ENV_PREFIX: &str = "GANTRY_REF_";

/// Marks a `{{param:` that came from a `#{…}` value (see `resolve_action`).
pub(crate) const PARAM_MARK: char = '\u{E002}';
/// `{{param:` as it stands in an env value when a `#{…}` value brought it.
pub(crate) const PARAM_ESCAPED: &str = "{{\u{E002}param:";

/// A copy of `action` with every reference replaced, or the first
/// reference that has no value.
pub(crate) fn resolve_action(
    action: &Action,
    lookup: impl Fn(&VarRef) -> Option<String>,
) -> Result<Action, String> {
    let r = |s: &str| resolve(s, &lookup).map_err(|e| e.to_string());
    let opt = |s: &Option<String>| s.as_deref().map(r).transpose();
    let mut out = action.clone();
    if let Some(name) = out.env.keys().find(|k| k.starts_with(REF_ENV_PREFIX)) {
        return Err(format!(
            "env {name}: names starting with {REF_ENV_PREFIX} are reserved for the #{{…}} values of commands"
        ));
    }
    // `{{param:…}}` is resolved after this, in what the file wrote: a
    // `#{…}` value (a commit message, a `--var`) that holds one must stay
    // text, or it could read any parameter. It is marked here and unmarked
    // by `parameters::resolve_env`.
    for value in out.env.values_mut() {
        if value.contains(PARAM_MARK) {
            return Err("an env value holds the character U+E002".to_string());
        }
        *value = resolve(value, |reference| {
            lookup(reference).map(|v| v.replace(crate::parameters::PARAM_OPEN, PARAM_ESCAPED))
        })
        .map_err(|e| e.to_string())?;
    }
    out.kind = match &action.kind {
        ActionKind::Source { repository, branch } => ActionKind::Source {
            repository: r(repository)?,
            branch: opt(branch)?,
        },
        ActionKind::Build { buildspec, image } => ActionKind::Build {
            buildspec: r(buildspec)?,
            image: opt(image)?,
        },
        ActionKind::Test { buildspec, image } => ActionKind::Test {
            buildspec: r(buildspec)?,
            image: opt(image)?,
        },
        ActionKind::Shell {
            commands,
            artifacts,
            exported_variables,
            image,
        } => ActionKind::Shell {
            commands: {
                let (commands, values) = commands_with_variables(commands, &lookup)?;
                out.env.extend(values);
                commands
            },
            artifacts: match artifacts {
                Some(a) => Some(ArtifactsSpec {
                    files: a.files.iter().map(|f| r(f)).collect::<Result<_, _>>()?,
                    name: opt(&a.name)?,
                    base_directory: opt(&a.base_directory)?,
                    exclude_paths: a
                        .exclude_paths
                        .iter()
                        .map(|f| r(f))
                        .collect::<Result<_, _>>()?,
                    ..a.clone()
                }),
                None => None,
            },
            exported_variables: exported_variables.clone(),
            image: opt(image)?,
        },
        ActionKind::Approval {
            review_url,
            comments,
            policy,
        } => ActionKind::Approval {
            review_url: opt(review_url)?,
            comments: opt(comments)?,
            policy: policy.clone(),
        },
        // Environment and service are names, checked when the project is
        // assembled; only the file name may hold references.
        ActionKind::Deploy {
            environment,
            service,
            file,
        } => ActionKind::Deploy {
            environment: environment.clone(),
            service: service.clone(),
            file: r(file)?,
        },
        // The container is a name matched against services; everything else
        // may hold references (the tag defaults to `#{gantry.ExecutionId}`).
        ActionKind::Image {
            context,
            repository,
            tag,
            registry,
            base,
            entrypoint,
            cmd,
            image_env,
            workdir,
            port,
            labels,
            user,
            dest,
            container,
        } => {
            let list = |items: &Option<Vec<String>>| {
                items
                    .as_ref()
                    .map(|items| items.iter().map(|i| r(i)).collect::<Result<Vec<_>, _>>())
                    .transpose()
            };
            let map = |m: &BTreeMap<String, String>| {
                m.iter()
                    .map(|(k, v)| Ok((k.clone(), r(v)?)))
                    .collect::<Result<BTreeMap<_, _>, String>>()
            };
            ActionKind::Image {
                context: r(context)?,
                repository: r(repository)?,
                tag: r(tag)?,
                registry: opt(registry)?,
                base: opt(base)?,
                entrypoint: list(entrypoint)?,
                cmd: list(cmd)?,
                image_env: map(image_env)?,
                workdir: opt(workdir)?,
                port: *port,
                labels: map(labels)?,
                user: opt(user)?,
                dest: r(dest)?,
                container: container.clone(),
            }
        }
        ActionKind::Promote {
            tag,
            repositories,
            registry,
            file,
        } => ActionKind::Promote {
            tag: r(tag)?,
            repositories: repositories
                .iter()
                .map(|(k, v)| Ok((k.clone(), r(v)?)))
                .collect::<Result<_, String>>()?,
            registry: opt(registry)?,
            file: r(file)?,
        },
    };
    Ok(out)
}

/// Marks a reference's place while the command's quoting is worked out;
/// private-use characters, so no command text holds them by chance (and a
/// command that does is refused).
const MARK_OPEN: char = '\u{E000}';
const MARK_CLOSE: char = '\u{E001}';

/// `commands` with every reference made an expansion of a variable, and
/// those variables with their values (see the module docs).
fn commands_with_variables(
    commands: &[String],
    lookup: &impl Fn(&VarRef) -> Option<String>,
) -> Result<(Vec<String>, BTreeMap<String, String>), String> {
    let mut names: BTreeMap<VarRef, String> = BTreeMap::new();
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::with_capacity(commands.len());
    for command in commands {
        if command.contains([MARK_OPEN, MARK_CLOSE]) {
            return Err("a command holds the characters U+E000 or U+E001".to_owned());
        }
        for reference in references(command)? {
            if names.contains_key(&reference) {
                continue;
            }
            let value =
                lookup(&reference).ok_or_else(|| format!("unresolved variable {reference}"))?;
            let base = ref_env_name(&reference);
            let mut name = base.clone();
            let mut n = 1;
            while values.contains_key(&name) {
                n += 1;
                name = format!("{base}_{n}");
            }
            values.insert(name.clone(), value);
            names.insert(reference, name);
        }
        let marked = resolve(command, |r| {
            names
                .get(r)
                .map(|name| format!("{MARK_OPEN}{name}{MARK_CLOSE}"))
        })
        .map_err(|e| e.to_string())?;
        out.push(expand_marks(&marked));
    }
    Ok((out, values))
}

/// `GANTRY_REF_<namespace>_<NAME>`, with every character a shell name cannot
/// hold made `_`.
fn ref_env_name(reference: &VarRef) -> String {
    format!("{REF_ENV_PREFIX}{}_{}", reference.namespace, reference.name)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Where the lexer is in a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    /// Outside quotes, or inside `$(…)` (with its open parentheses).
    Plain {
        parens: u32,
    },
    Single,
    Double,
    Backtick,
}

/// Replaces each marked variable name by `${NAME}`, closing and reopening a
/// single-quoted string around it.
fn expand_marks(command: &str) -> String {
    let mut out = String::with_capacity(command.len() + 16);
    let mut stack = vec![Quoting::Plain { parens: 0 }];
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        let top = *stack.last().unwrap_or(&Quoting::Plain { parens: 0 });
        if c == MARK_OPEN {
            let name: String = chars.by_ref().take_while(|&c| c != MARK_CLOSE).collect();
            if top == Quoting::Single {
                out.push_str(&format!("'\"${{{name}}}\"'"));
            } else {
                out.push_str(&format!("${{{name}}}"));
            }
            continue;
        }
        out.push(c);
        match (top, c) {
            (Quoting::Single, '\'') => {
                stack.pop();
            }
            (Quoting::Single, _) => {}
            (_, '\\') => {
                // The next character is taken literally (a mark never is:
                // it cannot follow a backslash in a well-formed template).
                if let Some(&next) = chars.peek()
                    && next != MARK_OPEN
                {
                    out.push(next);
                    chars.next();
                }
            }
            (Quoting::Double, '"') | (Quoting::Backtick, '`') => {
                stack.pop();
            }
            (_, '$') if chars.peek() == Some(&'(') => {
                out.push('(');
                chars.next();
                stack.push(Quoting::Plain { parens: 0 });
            }
            (Quoting::Double, '`') | (Quoting::Plain { .. }, '`') => stack.push(Quoting::Backtick),
            (Quoting::Double, _) => {}
            (_, '\'') => stack.push(Quoting::Single),
            (_, '"') => stack.push(Quoting::Double),
            (Quoting::Plain { parens }, '(') => {
                if let Some(last) = stack.last_mut() {
                    *last = Quoting::Plain { parens: parens + 1 };
                }
            }
            (Quoting::Plain { parens }, ')') if stack.len() > 1 => {
                if parens == 0 {
                    stack.pop();
                } else if let Some(last) = stack.last_mut() {
                    *last = Quoting::Plain { parens: parens - 1 };
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commands(command: &str, value: &str) -> (String, BTreeMap<String, String>) {
        let (mut out, values) =
            commands_with_variables(&[command.to_owned()], &|_| Some(value.to_owned())).unwrap();
        (out.remove(0), values)
    }

    #[test]
    fn references_become_expansions_fitting_their_quotes() {
        let cases = [
            (
                r##"echo "#{Source.CommitMessage}""##,
                r##"echo "${GANTRY_REF_Source_CommitMessage}""##,
            ),
            ("echo #{a.B}/x", "echo ${GANTRY_REF_a_B}/x"),
            ("echo 'v=#{a.B}.'", r##"echo 'v='"${GANTRY_REF_a_B}"'.'"##),
            (
                r##"echo "it's #{a.B}""##,
                r##"echo "it's ${GANTRY_REF_a_B}""##,
            ),
            (
                r##"echo "$(printf '%s' '#{a.B}')""##,
                r##"echo "$(printf '%s' ''"${GANTRY_REF_a_B}"'')""##,
            ),
            (r"echo \' #{a.B}", r"echo \' ${GANTRY_REF_a_B}"),
            (
                "echo $( (cd x) ) '#{a.B}'",
                r##"echo $( (cd x) ) ''"${GANTRY_REF_a_B}"''"##,
            ),
            (
                "echo `echo '#{a.B}'`",
                r##"echo `echo ''"${GANTRY_REF_a_B}"''`"##,
            ),
            ("echo ##{a.B}", "echo #{a.B}"),
        ];
        for (command, expected) in cases {
            assert_eq!(commands(command, "v").0, expected, "{command}");
        }
    }

    #[test]
    fn each_reference_gets_one_variable_with_its_value() {
        let (command, values) = commands("echo #{my-ns.X} #{my_ns.X} #{my-ns.X}", "v");
        assert_eq!(
            command,
            "echo ${GANTRY_REF_my_ns_X} ${GANTRY_REF_my_ns_X_2} ${GANTRY_REF_my_ns_X}"
        );
        assert_eq!(values.len(), 2);
        assert_eq!(values["GANTRY_REF_my_ns_X"], "v");
    }

    #[test]
    fn an_unknown_reference_fails() {
        let error = commands_with_variables(&["echo #{a.B}".to_owned()], &|_| None).unwrap_err();
        assert!(error.contains("#{a.B}"), "{error}");
    }
}
