//! The mutations: 1, 2, 4 or 8 of them stacked on a copy of a corpus entry.

use crate::Rng;

/// Bytes that separate or quote things in the formats under test.
const INTERESTING: &[u8] = b"\0\x01\x7f\x80\xff\n\r\t \"'\\#%-_/.:;,=*!?@+~[](){}<>$0179az";

/// Numbers at the edges of integer types and of Keel's limits.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "7",
    "255",
    "256",
    "4095",
    "4096",
    "8192",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999",
];

/// Generic tokens, for every target.
const GENERIC: &[&[u8]] = &[
    b"\n",
    b"\r\n",
    b"\xc3\xa9",
    b"\xe2\x80\xa6",
    b"\xf0\x9f\x92\xa9",
];

fn pick<'a>(rng: &mut Rng, list: &[&'a [u8]]) -> &'a [u8] {
    list[rng.below(list.len())]
}

fn token<'a>(rng: &mut Rng, dict: &[&'a [u8]]) -> &'a [u8] {
    if !dict.is_empty() && !rng.one_in(4) {
        pick(rng, dict)
    } else {
        pick(rng, GENERIC)
    }
}

/// A range `start..end` of `len` with 1 to `max` bytes; `None` when `len` is 0.
fn range(rng: &mut Rng, len: usize, max: usize) -> Option<(usize, usize)> {
    if len == 0 {
        return None;
    }
    let n = 1 + rng.below(max.min(len));
    let start = rng.below(len - n + 1);
    Some((start, start + n))
}

/// Mutate `buf` in place: stacked mutations, then cut to `max_len`.
pub fn mutate(
    rng: &mut Rng,
    buf: &mut Vec<u8>,
    corpus: &[Vec<u8>],
    dict: &[&[u8]],
    max_len: usize,
) {
    let rounds = 1 << rng.below(4);
    for _ in 0..rounds {
        one(rng, buf, corpus, dict, max_len);
        buf.truncate(max_len);
    }
}

fn one(rng: &mut Rng, buf: &mut Vec<u8>, corpus: &[Vec<u8>], dict: &[&[u8]], max_len: usize) {
    let len = buf.len();
    match rng.below(15) {
        // Flip a bit.
        0 if len > 0 => {
            let i = rng.below(len);
            buf[i] ^= 1 << rng.below(8);
        }
        // Replace a byte with an interesting one.
        1 if len > 0 => {
            let i = rng.below(len);
            buf[i] = INTERESTING[rng.below(INTERESTING.len())];
        }
        // Insert a byte, interesting or random.
        2 => {
            let b = if rng.one_in(2) {
                INTERESTING[rng.below(INTERESTING.len())]
            } else {
                rng.next_u64() as u8
            };
            buf.insert(rng.below(len + 1), b);
        }
        // Delete a range.
        3 => {
            if let Some((a, b)) = range(rng, len, 16) {
                buf.drain(a..b);
            }
        }
        // Duplicate a range somewhere.
        4 => {
            if let Some((a, b)) = range(rng, len, 64) {
                let chunk = buf[a..b].to_vec();
                let at = rng.below(len + 1);
                buf.splice(at..at, chunk);
            }
        }
        // Repeat a short range many times in place: long names, deep nesting, limits.
        5 => {
            if let Some((a, b)) = range(rng, len, 8) {
                let chunk = buf[a..b].to_vec();
                let bits = 1 + rng.below(13);
                let times = 1 + rng.below(1 << bits);
                let room = max_len.saturating_sub(len) / chunk.len();
                let rep = chunk.repeat(times.min(room));
                buf.splice(b..b, rep);
            }
        }
        // Insert a chunk of another corpus entry.
        6 => {
            let other = &corpus[rng.below(corpus.len())];
            if let Some((a, b)) = range(rng, other.len(), 256) {
                let at = rng.below(len + 1);
                buf.splice(at..at, other[a..b].iter().copied());
            }
        }
        // Cross over: a prefix of this one, a suffix of another.
        7 => {
            let other = &corpus[rng.below(corpus.len())];
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            buf.truncate(cut);
            buf.extend_from_slice(&other[from..]);
        }
        // Insert a dictionary token.
        8 => {
            let t = token(rng, dict);
            let at = rng.below(len + 1);
            buf.splice(at..at, t.iter().copied());
        }
        // Overwrite with a dictionary token.
        9 if len > 0 => {
            let t = token(rng, dict);
            let at = rng.below(len);
            let end = (at + t.len()).min(len);
            buf.splice(at..end, t.iter().copied());
        }
        // Replace a run of digits with an edge number.
        10 => {
            let digits: Vec<usize> = (0..len).filter(|&i| buf[i].is_ascii_digit()).collect();
            let n = NUMBERS[rng.below(NUMBERS.len())].as_bytes();
            if digits.is_empty() {
                let at = rng.below(len + 1);
                buf.splice(at..at, n.iter().copied());
            } else {
                let a = digits[rng.below(digits.len())];
                let b = (a..len).find(|&i| !buf[i].is_ascii_digit()).unwrap_or(len);
                buf.splice(a..b, n.iter().copied());
            }
        }
        // Insert a line of another corpus entry after a line break (line formats).
        11 => {
            let other = &corpus[rng.below(corpus.len())];
            let lines: Vec<&[u8]> = other.split(|&b| b == b'\n').collect();
            let line = lines[rng.below(lines.len())];
            let breaks: Vec<usize> = (0..len)
                .filter(|&i| buf[i] == b'\n')
                .map(|i| i + 1)
                .collect();
            let at = if breaks.is_empty() || rng.one_in(4) {
                len
            } else {
                breaks[rng.below(breaks.len())]
            };
            let mut ins = line.to_vec();
            ins.push(b'\n');
            buf.splice(at..at, ins);
        }
        // Add or subtract a little.
        12 if len > 0 => {
            let i = rng.below(len);
            let d = 1 + rng.below(16) as u8;
            buf[i] = if rng.one_in(2) {
                buf[i].wrapping_add(d)
            } else {
                buf[i].wrapping_sub(d)
            };
        }
        // Cut the end off.
        13 if len > 0 => buf.truncate(rng.below(len)),
        // Swap two bytes.
        14 if len > 1 => {
            let (i, j) = (rng.below(len), rng.below(len));
            buf.swap(i, j);
        }
        _ => {
            let t = token(rng, dict);
            buf.extend_from_slice(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutants_stay_within_the_limit_and_vary() {
        let mut rng = Rng::new(3);
        let corpus = vec![b"sys-apps/systemd\n>=dev-lang/python-3.11".to_vec()];
        let mut seen = std::collections::HashSet::new();
        for _ in 0..5000 {
            let mut b = corpus[0].clone();
            mutate(&mut rng, &mut b, &corpus, &[b"::gentoo"], 1000);
            assert!(b.len() <= 1000);
            seen.insert(b);
        }
        assert!(seen.len() > 4000, "{}", seen.len());
        // Some mutants grow long (repeats), some get the token.
        assert!(seen.iter().any(|b| b.len() > 500));
        assert!(seen.iter().any(|b| b.windows(8).any(|w| w == b"::gentoo")));
    }
}
