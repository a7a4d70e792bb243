//! A small, deterministic mutation fuzzer that runs on the stable toolchain, and one target
//! per parser of untrusted or careless input (docs/fuzz.md).
//!
//! No instrumentation (libFuzzer and `cargo fuzz` need nightly): the feedback is the shape
//! of each outcome. A target reports hashes of what its parser said (which error, with the
//! quoted parts and numbers taken out, or which kind of success); an input with a shape
//! not seen before joins the corpus, so inputs that reach new error paths are mutated
//! further. A
//! target fails by panicking: the parser panicked, or a property the target checks (a
//! normal form that parses again, a message that names its file and line) did not hold.
//!
//! Everything is a function of the seed: the seeded xorshift generator picks the corpus
//! entry and the mutations, and nothing depends on the clock but when a timed run stops.
//! The same seed and number of executions give the same inputs.

pub mod mutate;
pub mod targets;

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

/// Inputs are cut to this many bytes unless a target says otherwise.
pub const MAX_INPUT: usize = 64 << 10;
/// The corpus holds at most this many entries; then a newcomer takes a mutant's place.
pub const MAX_CORPUS: usize = 2048;
/// One mutant in this many joins the corpus whatever its shapes.
pub const WANDER: usize = 256;
/// An execution slower than this is saved (`slow-*.bin`) and reported.
pub const SLOW: Duration = Duration::from_secs(1);

/// xorshift64* (Vigna), seeded through splitmix64 so that nearby seeds diverge at once.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`; 0 when `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// FNV-1a, for shapes and file names.
pub fn fnv(bytes: impl IntoIterator<Item = u8>, mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// The shape of a message, so that the same error about different input has the same
/// shape. Split at quote characters (`` ` ``, `'`, `"`), the even pieces are outside quotes
/// when the quotes pair up; their words without digits (letters and colons) count: the
/// first piece's in full, the last one's folded into 64 values, and at most three others
/// that look like the message's own words (a space, colon or comma first; only lowercase
/// letters, spaces and punctuation; a word of three letters or more) folded into 8.
///
/// Input in a message must not make its shape new: a fuzzer soon evolves inputs that do,
/// and then every input is new. Quote characters in quoted input shift the pieces, so what
/// cannot be told from the message's own words is folded: a kind of message (its first
/// piece) has at most 512 shapes.
pub fn shape(text: &str) -> u64 {
    shape_in(text, "")
}

/// [`shape`], leaving out as well every piece that occurs in `input`, the text the
/// message is about.
pub fn shape_in(text: &str, input: &str) -> u64 {
    let pieces: Vec<&str> = text.split(['`', '\'', '"']).collect();
    let last = pieces.len() - 1;
    let own_words = |p: &str| {
        p.len() <= 60
            && p.starts_with([' ', ':', ','])
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b" :,;.()".contains(&b))
            && p.split(' ')
                .any(|w| w.len() >= 3 && w.bytes().all(|b| b.is_ascii_lowercase()))
    };
    let words = |p: &str| -> Vec<u8> {
        if p.len() > 1 && input.contains(p) {
            return Vec::new();
        }
        // Words with a digit are numbers, digests, sizes: left out whole.
        let mut out = Vec::new();
        for w in p
            .split_whitespace()
            .filter(|w| !w.bytes().any(|b| b.is_ascii_digit()))
        {
            out.extend(w.bytes().filter(|b| b.is_ascii_alphabetic() || *b == b':'));
            out.push(b' ');
        }
        out
    };
    let head = fnv(words(pieces[0]), FNV_OFFSET);
    let tail = if last > 0 && last.is_multiple_of(2) {
        fnv(words(pieces[last]), FNV_OFFSET) % 64
    } else {
        64
    };
    let mut middle = Vec::new();
    for (i, p) in pieces.iter().enumerate().take(last).skip(1) {
        if i.is_multiple_of(2) && own_words(p) && middle.len() < 3 {
            middle.push(fnv(words(p), FNV_OFFSET));
        }
    }
    let middle = fnv(middle.iter().flat_map(|m| m.to_le_bytes()), FNV_OFFSET) % 8;
    mix(mix(head, tail), middle)
}

/// Two shapes as one.
pub fn mix(a: u64, b: u64) -> u64 {
    fnv(b.to_le_bytes(), a ^ 0x9e37_79b9)
}

/// What the target's harness does with one input: it pushes the shapes of the outcomes
/// (one per line, say) onto the vector, and panics when the parser panics or a property
/// fails.
pub type Harness = Box<dyn FnMut(&[u8], &mut Vec<u64>)>;

/// One parser under test.
pub struct Target {
    pub name: &'static str,
    /// What the target feeds and to what, for the docs and the reports.
    pub about: &'static str,
    /// The first inputs: small real examples.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Tokens worth inserting, beyond the generic ones.
    pub dict: &'static [&'static [u8]],
    /// Inputs are cut to this many bytes.
    pub max_len: usize,
    /// Make the harness (it may own scratch directories, removed when it is dropped).
    pub harness: fn() -> Harness,
}

/// When a run stops: after `execs` executions or `time`, whichever comes first.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub execs: Option<u64>,
    pub time: Option<Duration>,
}

/// A panic the fuzzer found.
#[derive(Debug, Clone)]
pub struct Crash {
    pub target: &'static str,
    /// The panic message, with its location.
    pub message: String,
    pub input: Vec<u8>,
    /// Where the input was written (`None` if writing failed, said in `message`).
    pub saved: Option<PathBuf>,
    /// The execution that panicked (1-based).
    pub exec: u64,
}

impl fmt::Display for Crash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "fuzz target `{}` panicked at execution {}: {}",
            self.target, self.exec, self.message
        )?;
        match &self.saved {
            Some(p) => writeln!(
                f,
                "input ({} bytes) written to {}",
                self.input.len(),
                p.display()
            )?,
            None => writeln!(f, "input ({} bytes) not written", self.input.len())?,
        }
        write!(f, "input: {}", escaped(&self.input, 4096))
    }
}

/// `b"..."` with Rust byte-string escapes, cut after `max` input bytes.
pub fn escaped(input: &[u8], max: usize) -> String {
    let shown = &input[..input.len().min(max)];
    let mut s = format!("b\"{}\"", shown.escape_ascii());
    if input.len() > max {
        s += &format!(" ... ({} more bytes)", input.len() - max);
    }
    s
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Report {
    pub target: &'static str,
    pub execs: u64,
    pub elapsed: Duration,
    /// Corpus entries at the end (seeds included).
    pub corpus: usize,
    /// Distinct outcome shapes seen.
    pub shapes: usize,
    /// The slowest execution, and where its input was saved when slower than [`SLOW`].
    pub slowest: Duration,
    pub slow_input: Option<PathBuf>,
    pub crash: Option<Crash>,
}

impl Report {
    pub fn execs_per_sec(&self) -> f64 {
        self.execs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

thread_local! {
    /// The location and message of the last panic on this thread, set by the hook.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Record each panic's location for the report, then do what the previous hook did.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let at = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                .unwrap_or_else(|| "(unknown location)".into());
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("panicked at {at}")));
            previous(info);
        }));
    });
}

fn payload_text(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic payload that is not text)".into()
    }
}

/// Run one input through a harness, turning a panic into its message.
fn execute(harness: &mut Harness, input: &[u8], shapes: &mut Vec<u64>) -> Result<(), String> {
    LAST_PANIC.with(|p| p.borrow_mut().take());
    shapes.clear();
    panic::catch_unwind(AssertUnwindSafe(|| harness(input, shapes))).map_err(|payload| {
        let at = LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| "panicked".into());
        format!("{at}: {}", payload_text(&*payload))
    })
}

/// Write `input` to `dir/<target>/<kind>-<hash>.bin`.
fn save(dir: &Path, target: &str, kind: &str, input: &[u8]) -> Result<PathBuf, String> {
    let d = dir.join(target);
    let p = d.join(format!(
        "{kind}-{:016x}.bin",
        fnv(input.iter().copied(), FNV_OFFSET)
    ));
    std::fs::create_dir_all(&d)
        .and_then(|()| std::fs::write(&p, input))
        .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    Ok(p)
}

/// Run one input through a target, as the fuzzer does: its shapes, or the panic message.
pub fn replay(target: &Target, input: &[u8]) -> Result<Vec<u64>, String> {
    install_hook();
    let mut h = (target.harness)();
    let mut shapes = Vec::new();
    execute(&mut h, input, &mut shapes).map(|()| shapes)
}

/// Fuzz `target` from `seed` within `limits`. Crashing and slow inputs are written under
/// `out_dir/<target>/`. Stops at the first panic.
pub fn run(target: &Target, seed: u64, limits: Limits, out_dir: &Path) -> Report {
    install_hook();
    let start = Instant::now();
    let mut rng = Rng::new(seed ^ fnv(target.name.bytes(), FNV_OFFSET));
    let mut harness = (target.harness)();
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    for mut s in (target.seeds)() {
        s.truncate(target.max_len);
        if !corpus.contains(&s) {
            corpus.push(s);
        }
    }
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let mut shapes = std::collections::HashSet::new();
    let mut report = Report {
        target: target.name,
        execs: 0,
        elapsed: Duration::ZERO,
        corpus: 0,
        shapes: 0,
        slowest: Duration::ZERO,
        slow_input: None,
        crash: None,
    };
    let seeds = corpus.len();
    let mut next_seed = 0;
    let mut found = Vec::new();
    loop {
        if limits.execs.is_some_and(|n| report.execs >= n)
            || limits.time.is_some_and(|t| start.elapsed() >= t)
        {
            break;
        }
        // The seeds as they are first, then mutants of corpus entries.
        let mutant = next_seed >= seeds;
        let input = if !mutant {
            next_seed += 1;
            corpus[next_seed - 1].clone()
        } else {
            let mut input = corpus[rng.below(corpus.len())].clone();
            mutate::mutate(&mut rng, &mut input, &corpus, target.dict, target.max_len);
            input
        };
        report.execs += 1;
        let t = Instant::now();
        let outcome = execute(&mut harness, &input, &mut found);
        let took = t.elapsed();
        if took > report.slowest {
            report.slowest = took;
            if took > SLOW {
                report.slow_input = save(out_dir, target.name, "slow", &input).ok();
            }
        }
        match outcome {
            Ok(()) => {
                let mut new = false;
                for s in &found {
                    new |= shapes.insert(*s);
                }
                // A new shape earns a place; so does one mutant in [`WANDER`] by chance,
                // so that the corpus keeps drifting when the shapes are all known. A full
                // corpus keeps evolving: the newcomer takes a mutant's place.
                if mutant && (new || rng.one_in(WANDER)) {
                    if corpus.len() < MAX_CORPUS {
                        corpus.push(input);
                    } else if corpus.len() > seeds {
                        let i = seeds + rng.below(corpus.len() - seeds);
                        corpus[i] = input;
                    }
                }
            }
            Err(message) => {
                let (saved, message) = match save(out_dir, target.name, "crash", &input) {
                    Ok(p) => (Some(p), message),
                    Err(e) => (None, format!("{message} ({e})")),
                };
                report.crash = Some(Crash {
                    target: target.name,
                    message,
                    input,
                    saved,
                    exec: report.execs,
                });
                break;
            }
        }
    }
    report.elapsed = start.elapsed();
    report.corpus = corpus.len();
    report.shapes = shapes.len();
    report
}

/// The table of a run: target, executions, seconds, executions a second, shapes, corpus,
/// slowest execution, panics found.
pub fn table(reports: &[Report]) -> String {
    let mut out = format!(
        "{:<16} {:>10} {:>8} {:>10} {:>7} {:>7} {:>10} {:>7}\n",
        "target", "execs", "seconds", "execs/s", "shapes", "corpus", "slowest", "panics"
    );
    for r in reports {
        out += &format!(
            "{:<16} {:>10} {:>8.1} {:>10.0} {:>7} {:>7} {:>8.1}ms {:>7}\n",
            r.target,
            r.execs,
            r.elapsed.as_secs_f64(),
            r.execs_per_sec(),
            r.shapes,
            r.corpus,
            r.slowest.as_secs_f64() * 1e3,
            usize::from(r.crash.is_some()),
        );
    }
    out
}

/// The project's root directory (seeds are read from it).
pub use testutil::project_root;

/// The seed of a run: `KEEL_FUZZ_SEED` (decimal or `0x` hex), else a fixed one.
pub fn seed_from_env() -> Result<u64, String> {
    match std::env::var("KEEL_FUZZ_SEED") {
        Err(_) => Ok(0x6b65_656c),
        Ok(s) => {
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.map_err(|e| format!("KEEL_FUZZ_SEED=`{s}`: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_spread() {
        let a: Vec<u64> = (0..5)
            .scan(Rng::new(1), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..5)
            .scan(Rng::new(1), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        let mut r = Rng::new(0);
        let mut seen = [0usize; 10];
        for _ in 0..10_000 {
            seen[r.below(10)] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }

    #[test]
    fn shapes_ignore_quoted_parts_and_numbers() {
        assert_eq!(
            shape("invalid atom `a/b-1`: package name `b-1` ends in `-1`"),
            shape("invalid atom `x/y-2`: package name `y-2` ends in `-2`")
        );
        assert_eq!(
            shape("f:12: line is 9000 bytes"),
            shape("f:3: line is 1 bytes")
        );
        assert_ne!(shape("empty slot"), shape("empty atom"));
        // Whatever quoted input holds, one kind of message has at most 512 shapes.
        let mut rng = Rng::new(9);
        let shapes: std::collections::HashSet<u64> = (0..20_000)
            .map(|_| {
                let quoted: String = (0..rng.below(40))
                    .map(|_| [" ", "`", "'", "\"", " abc", ":", "xyz", "e"][rng.below(8)])
                    .collect();
                shape(&format!("category `{quoted}` contains `c`"))
            })
            .collect();
        assert!(shapes.len() <= 512, "{}", shapes.len());
        assert_ne!(
            shape("category `d` contains `y`"),
            shape("category `d` must start with a letter, digit or `_`, not `y`")
        );
        // Pieces of the input that look like words are not the message's.
        assert_eq!(
            shape_in(
                "slot ` sel ` must start with a letter, not ` `",
                "a/b: sel "
            ),
            shape_in(
                "slot ` abc ` must start with a letter, not ` `",
                "a/b: abc "
            )
        );
    }

    fn panicky() -> Harness {
        Box::new(|input: &[u8], shapes: &mut Vec<u64>| {
            if input.windows(3).any(|w| w == b"bug") {
                panic!("found the bug");
            }
            shapes.push(shape(&String::from_utf8_lossy(input)));
        })
    }

    #[test]
    fn a_panic_is_reported_with_its_input_saved() {
        let t = Target {
            name: "selftest",
            about: "",
            seeds: || vec![b"bu".to_vec(), b"xyz".to_vec()],
            dict: &[b"bug"],
            max_len: 64,
            harness: panicky,
        };
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            execs: Some(100_000),
            time: None,
        };
        let r = run(&t, 7, limits, dir.path());
        let crash = r.crash.expect("the dictionary token leads to the bug");
        assert!(crash.input.windows(3).any(|w| w == b"bug"));
        assert!(crash.message.contains("found the bug"), "{}", crash.message);
        assert!(crash.message.contains("src/lib.rs:"), "{}", crash.message);
        let saved = crash.saved.clone().unwrap();
        assert_eq!(std::fs::read(&saved).unwrap(), crash.input);
        assert!(crash.to_string().contains("input: b\""), "{crash}");
        // The same seed finds it at the same execution.
        let again = run(&t, 7, limits, dir.path()).crash.unwrap();
        assert_eq!((again.exec, again.input), (crash.exec, crash.input));
        assert!(replay(&t, b"a bug").is_err());
        assert!(replay(&t, b"fine").is_ok());
    }
}
