//! The auto-attendant: where a key pressed in a routing menu leads. Pure;
//! the webhook (`/api/webhooks/voice/menu`) and "test a call" both walk
//! menus through [`step`], so the panel shows what a caller gets.
//!
//! A caller who presses nothing, or a key without an option (answered
//! [`NOT_VALID`]), hears the menu again, [`RETRIES`] times at most; then the
//! menu's `no_input` action runs.

use proto::routing::{Action, MAX_MENU_DEPTH, MenuAction};

/// Said before the menu is played again after a key without an option.
pub const NOT_VALID: &str = "Sorry, that is not a valid choice.";

/// How often a menu is played again (no key, or a wrong one) before its
/// `no_input` action runs.
pub const RETRIES: u32 = 2;

/// Where a key (or its absence) leads.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Play the menu `path` keys deep, `tries` replays so far, `notice`
    /// said first.
    Menu {
        path: String,
        tries: u32,
        notice: Option<&'static str>,
    },
    /// Leave the menus: `action` runs; `path` is every key that led there.
    Done { action: Action, path: String },
}

/// True for a path a menu URL may carry: digits, no deeper than menus nest.
pub fn valid_path(path: &str) -> bool {
    path.len() < MAX_MENU_DEPTH && path.bytes().all(|b| b.is_ascii_digit())
}

/// The step after the menu at `path` (keys pressed before) of `root` got
/// `key` (None or "" = no key) on its `tries`th replay.
pub fn step(root: &MenuAction, path: &str, key: Option<&str>, tries: u32) -> Step {
    let Some(menu) = root.submenu(path).filter(|_| valid_path(path)) else {
        // The menu was edited under a live call: the caller is not left
        // in silence.
        return Step::Done {
            action: root.no_input_action(),
            path: path.to_owned(),
        };
    };
    let again = |notice| {
        if tries < RETRIES {
            Step::Menu {
                path: path.to_owned(),
                tries: tries + 1,
                notice,
            }
        } else {
            Step::Done {
                action: menu.no_input_action(),
                path: path.to_owned(),
            }
        }
    };
    let Some(key) = key.map(str::trim).filter(|k| !k.is_empty()) else {
        return again(None);
    };
    match menu.options.get(key) {
        Some(Action::Menu(_)) => Step::Menu {
            path: format!("{path}{key}"),
            tries: 0,
            notice: None,
        },
        Some(a) => Step::Done {
            action: a.clone(),
            path: format!("{path}{key}"),
        },
        None => again(Some(NOT_VALID)),
    }
}

/// The rule name of a call that left a menu: the route's, then each key.
pub fn rule_with_path(rule: &str, path: &str) -> String {
    let mut out = rule.to_owned();
    for k in path.chars() {
        out.push_str(" > ");
        out.push(k);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::routing::{AnnouncementAction, ForwardAction, VoicemailAction};

    fn say(t: &str) -> Action {
        Action::Announcement(AnnouncementAction {
            text: t.into(),
            audio: None,
        })
    }

    fn two_levels() -> MenuAction {
        let inner = MenuAction {
            greeting: "Billing press 1, support press 2".into(),
            audio: None,
            options: [
                ("1".to_owned(), say("billing")),
                (
                    "2".to_owned(),
                    Action::Forward(ForwardAction {
                        number: "+15550009999".into(),
                    }),
                ),
            ]
            .into(),
            timeout: None,
            no_input: Some(Box::new(say("bye"))),
        };
        MenuAction {
            greeting: "Sales press 1, help press 2".into(),
            audio: None,
            options: [
                ("1".to_owned(), say("sales")),
                ("2".to_owned(), Action::Menu(inner)),
            ]
            .into(),
            timeout: Some(4),
            no_input: None,
        }
    }

    #[test]
    fn keys_walk_into_submenus_and_out_to_an_action() {
        let m = two_levels();
        assert_eq!(
            step(&m, "", Some("2"), 0),
            Step::Menu {
                path: "2".into(),
                tries: 0,
                notice: None
            }
        );
        assert_eq!(
            step(&m, "2", Some("2"), 0),
            Step::Done {
                action: Action::Forward(ForwardAction {
                    number: "+15550009999".into()
                }),
                path: "22".into()
            }
        );
        assert_eq!(
            step(&m, "", Some("1"), 1),
            Step::Done {
                action: say("sales"),
                path: "1".into()
            }
        );
        assert_eq!(rule_with_path("route:5:Main", "22"), "route:5:Main > 2 > 2");
    }

    #[test]
    fn silence_replays_once_then_runs_no_input() {
        let m = two_levels();
        assert_eq!(
            step(&m, "", None, 0),
            Step::Menu {
                path: "".into(),
                tries: 1,
                notice: None
            }
        );
        // The top menu has no no_input: voicemail.
        assert_eq!(
            step(&m, "", Some(""), 2),
            Step::Done {
                action: Action::Voicemail(VoicemailAction::default()),
                path: "".into()
            }
        );
        // The inner one says bye.
        assert_eq!(
            step(&m, "2", None, 2),
            Step::Done {
                action: say("bye"),
                path: "2".into()
            }
        );
    }

    #[test]
    fn a_wrong_key_is_not_valid_and_replays() {
        let m = two_levels();
        for k in ["7", "*", "#", "12"] {
            assert_eq!(
                step(&m, "", Some(k), 0),
                Step::Menu {
                    path: "".into(),
                    tries: 1,
                    notice: Some(NOT_VALID)
                },
                "{k}"
            );
        }
        assert!(matches!(
            step(&m, "", Some("9"), RETRIES),
            Step::Done { .. }
        ));
    }

    #[test]
    fn a_path_the_menu_no_longer_has_leaves_for_no_input() {
        let m = two_levels();
        for p in ["1", "9", "x", "2222"] {
            assert_eq!(
                step(&m, p, Some("1"), 0),
                Step::Done {
                    action: Action::Voicemail(VoicemailAction::default()),
                    path: p.into()
                },
                "{p}"
            );
        }
    }
}
