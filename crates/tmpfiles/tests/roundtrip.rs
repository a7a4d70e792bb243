//! Writing an entry and parsing the line again gives the same entry.

use proptest::prelude::*;
use tmpfiles::entry::{parse_line, parse_timespan, Age, Entry, Mode, Modifiers, Owner, TYPES};
use tmpfiles::escape::{escape_argument, unescape};

fn word() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ._\\-\"'\\\\\t%é#=:~]{1,12}"
}

fn owner() -> impl Strategy<Value = Option<Owner>> {
    proptest::option::of((word(), any::<bool>()).prop_filter_map(
        "dash or colon",
        |(name, only_create)| {
            (name != "-" && !name.starts_with(':')).then_some(Owner { name, only_create })
        },
    ))
}

fn age() -> impl Strategy<Value = Option<Age>> {
    let unit = prop::sample::select(vec![
        "", "s", "min", "h", "d", "w", "ms", "us", "m", "seconds", "weeks",
    ]);
    proptest::option::of(
        (
            any::<bool>(),
            proptest::option::of("[abcmABCM]{1,8}"),
            prop::collection::vec((0u64..1000, unit), 1..3),
        )
            .prop_map(|(keep_first_level, by, parts)| {
                let span = parts
                    .iter()
                    .map(|(n, u)| format!("{n}{u}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                let usec = parse_timespan(&span).expect("valid span");
                Age {
                    keep_first_level,
                    by,
                    span,
                    usec,
                }
            }),
    )
}

fn argument(kind: char, base64: bool) -> BoxedStrategy<Option<String>> {
    match kind {
        'c' | 'b' => (0u32..4096, 0u32..1_048_576)
            .prop_map(|(a, b)| Some(format!("{a}:{b}")))
            .boxed(),
        't' | 'T' => "(user\\.[a-z]{1,5}=[a-z0-9]{1,5} ?){1,3}"
            .prop_map(|s| Some(s.trim().to_owned()))
            .boxed(),
        'h' | 'H' => ("[+=-]?", "[aAcCdDeijPsStTux]{1,4}")
            .prop_map(|(o, l)| Some(format!("{o}{l}")))
            .boxed(),
        'a' | 'A' => Just(Some("u::rwx,g::r-x,o::---,u:alice:rw-".to_owned())).boxed(),
        'w' if base64 => "[A-Za-z0-9+/]{4}{1,4}".prop_map(Some).boxed(),
        'f' | 'F' if base64 => proptest::option::of("[A-Za-z0-9+/]{4}{1,4}").boxed(),
        'w' => prop::collection::vec(1u8..=255, 1..20)
            .prop_map(|b| Some(escape_argument(&b, true)))
            .boxed(),
        'C' => proptest::option::of(
            "[a-z0-9/._ %]{0,15}".prop_map(|s| escape_argument(format!("/{s}").as_bytes(), true)),
        )
        .boxed(),
        'f' | 'F' | 'L' => proptest::option::of(
            prop::collection::vec(1u8..=255, 1..20).prop_map(|b| escape_argument(&b, true)),
        )
        .boxed(),
        _ => proptest::option::of("[a-zA-Z0-9/._]{1,10}")
            .prop_filter("dash", |a| a.as_deref() != Some("-"))
            .boxed(),
    }
}

fn entry() -> impl Strategy<Value = Entry> {
    let kinds: Vec<char> = TYPES.chars().collect();
    (prop::sample::select(kinds), any::<[bool; 7]>()).prop_flat_map(|(kind, m)| {
        let base64 = m[4] && "fFw".contains(kind);
        let modifiers = Modifiers {
            plus: m[0],
            boot: m[1],
            allow_failure: m[2],
            replace: m[3],
            base64,
            credential: false,
            purge: m[5],
            optional: m[6],
        };
        (
            Just(kind),
            Just(modifiers),
            prop::collection::vec(word(), 1..4).prop_map(|v| format!("/{}", v.join("/"))),
            proptest::option::of((0u32..=0o7777, any::<bool>(), any::<bool>()).prop_map(
                |(bits, mask, only_create)| Mode {
                    bits,
                    mask,
                    only_create,
                },
            )),
            owner(),
            owner(),
            age(),
            argument(kind, base64),
        )
            .prop_map(
                |(kind, modifiers, path, mode, user, group, age, argument)| Entry {
                    kind,
                    modifiers,
                    path,
                    mode,
                    user,
                    group,
                    age,
                    argument,
                },
            )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn write_then_parse(e in entry()) {
        let line = e.to_string();
        let back = parse_line(&line).map_err(|err| TestCaseError::fail(format!("{line:?}: {err}")))?;
        prop_assert_eq!(back.as_ref(), Some(&e), "line {:?}", line);
    }

    #[test]
    fn argument_escaping(data in prop::collection::vec(1u8..=255, 1..40)) {
        let esc = escape_argument(&data, false);
        prop_assert_eq!(unescape(&esc).unwrap(), data);
        let line = format!("f /x - - - - {esc}");
        let e = parse_line(&line).unwrap().unwrap();
        prop_assert_eq!(e.argument.as_deref(), Some(esc.as_str()));
    }
}
