use super::*;
use proptest::prelude::*;

/// The start of a `.config` as `make olddefconfig` writes it (Linux 6.1).
const CONFIG: &str = "#
# Automatically generated file; DO NOT EDIT.
# Linux/x86 6.1.0 Kernel Configuration
#
CONFIG_CC_VERSION_TEXT=\"gcc (Debian 12.2.0-14) 12.2.0\"
CONFIG_AUDIT=y
CONFIG_SECURITY=y
CONFIG_SECURITY_SELINUX=y
# CONFIG_SECURITY_SELINUX_DEVELOP is not set
CONFIG_SQUASHFS=m
CONFIG_LSM=\"landlock,lockdown,yama,integrity,apparmor,selinux,bpf\"
CONFIG_LOG_BUF_SHIFT=17
# CONFIG_MODULE_FORCE_UNLOAD is not set
";

fn fragment(text: &str) -> Vec<Setting> {
    parse_fragment("variants/v/kernel/config.d/50-v.config", text).unwrap()
}

#[test]
fn every_kind_of_line() {
    let s = fragment(
        "# a comment\n\nCONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D=\"x,y\"\nCONFIG_E=0x10\nCONFIG_F=n\n  CONFIG_G=y  \n",
    );
    let got: Vec<(usize, &str, String)> = s
        .iter()
        .map(|s| (s.line, s.option.as_str(), s.value.to_string()))
        .collect();
    assert_eq!(
        got,
        [
            (3, "CONFIG_A", "y".to_owned()),
            (4, "CONFIG_B", "m".into()),
            (5, "CONFIG_C", "not set".into()),
            (6, "CONFIG_D", "\"x,y\"".into()),
            (7, "CONFIG_E", "0x10".into()),
            (8, "CONFIG_F", "not set".into()),
            (9, "CONFIG_G", "y".into()),
        ]
    );
}

#[test]
fn a_line_that_is_not_a_setting_names_its_file_and_line() {
    for bad in [
        "SECURITY_SELINUX=y",
        "CONFIG_A",
        "CONFIG_A=",
        "CONFIG_A B=y",
        "CONFIG_=y",
        "CONFIG_D=\"open",
    ] {
        let e = parse_fragment("f.config", &format!("CONFIG_OK=y\n{bad}\n")).unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.line, e.text.as_str()),
            ("f.config", 2, bad)
        );
        assert!(e.to_string().starts_with("f.config:2: `"), "{e}");
    }
}

#[test]
fn met_settings_are_no_mismatch() {
    let config = parse_config(CONFIG);
    let s = fragment(
        "CONFIG_AUDIT=y\nCONFIG_SQUASHFS=m\n# CONFIG_SECURITY_SELINUX_DEVELOP is not set\nCONFIG_LOG_BUF_SHIFT=17\n# CONFIG_NO_SUCH_OPTION is not set\nCONFIG_MODULE_FORCE_UNLOAD=n\n",
    );
    assert_eq!(check(&s, &config), []);
}

#[test]
fn an_unknown_option_names_file_line_and_option() {
    let config = parse_config(CONFIG);
    let m = check(
        &fragment("CONFIG_AUDIT=y\n\nCONFIG_KEEL_NO_SUCH_OPTION=y\n"),
        &config,
    );
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].got, None);
    assert_eq!(
        m[0].to_string(),
        "variants/v/kernel/config.d/50-v.config:3: CONFIG_KEEL_NO_SUCH_OPTION=y: CONFIG_KEEL_NO_SUCH_OPTION is not in the kernel's final configuration (the kernel has no such option, or its dependencies are not met)"
    );
}

#[test]
fn an_overridden_value_says_what_it_got() {
    let config = parse_config(CONFIG);
    let m = check(
        &fragment(
            "CONFIG_SECURITY_SELINUX_DEVELOP=y\nCONFIG_SQUASHFS=y\nCONFIG_LSM=\"selinux\"\n# CONFIG_AUDIT is not set\n",
        ),
        &config,
    );
    let lines: Vec<String> = m.iter().map(|m| m.to_string()).collect();
    assert_eq!(
        lines,
        [
            "variants/v/kernel/config.d/50-v.config:1: CONFIG_SECURITY_SELINUX_DEVELOP=y: the kernel's final configuration has # CONFIG_SECURITY_SELINUX_DEVELOP is not set (a dependency or another option decided it)",
            "variants/v/kernel/config.d/50-v.config:2: CONFIG_SQUASHFS=y: the kernel's final configuration has CONFIG_SQUASHFS=m (a dependency or another option decided it)",
            "variants/v/kernel/config.d/50-v.config:3: CONFIG_LSM=\"selinux\": the kernel's final configuration has CONFIG_LSM=\"landlock,lockdown,yama,integrity,apparmor,selinux,bpf\" (a dependency or another option decided it)",
            "variants/v/kernel/config.d/50-v.config:4: # CONFIG_AUDIT is not set: the kernel's final configuration has CONFIG_AUDIT=y (a dependency or another option decided it)",
        ]
    );
}

#[test]
fn a_later_fragment_replaces_an_earlier_ones_line() {
    let config = parse_config(CONFIG);
    let mut s = parse_fragment("10-a.config", "CONFIG_SQUASHFS=y\nCONFIG_AUDIT=m\n").unwrap();
    s.extend(parse_fragment("20-b.config", "CONFIG_SQUASHFS=m\n").unwrap());
    let m = check(&s, &config);
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(
        (m[0].wanted.file.as_str(), m[0].wanted.line),
        ("10-a.config", 2)
    );
}

proptest! {
    /// What a setting renders as parses back to the same setting, in a fragment and in a
    /// final configuration, and then checks as met.
    #[test]
    fn rendered_lines_parse_back(
        name in "[A-Z0-9_]{1,20}",
        value in prop_oneof![
            Just(Value::NotSet),
            Just(Value::Set("y".into())),
            Just(Value::Set("m".into())),
            "[0-9]{1,6}".prop_map(Value::Set),
            "[a-z,. ]{0,12}".prop_map(|s| Value::Set(format!("\"{s}\""))),
        ],
    ) {
        let s = Setting { file: "f".into(), line: 1, option: format!("CONFIG_{name}"), value };
        let text = s.line_text();
        prop_assert_eq!(parse_fragment("f", &text).unwrap(), vec![s.clone()]);
        prop_assert_eq!(check(&[s], &parse_config(&text)), vec![]);
    }
}
