//! How deep a pickle nests its containers, found by walking its opcodes without building
//! anything. serde-pickle builds and then converts and drops its values recursively: a 400 KB
//! pickle of lists nested 200,000 deep overflows the stack, which aborts the process (found
//! while writing the `pickle` fuzz target, by hand: such an input is longer than the fuzzer's
//! inputs; kept in `fuzz/regressions/pickle/`). So the nesting is measured first.
//!
//! Each value on the pickle machine's stack is tracked only by its depth: 0 for a scalar, 1
//! plus the deepest element for a container. Memo entries keep the depth of what they hold, so
//! shared references cost nothing. The walk gives up, returning what it has, on anything it
//! does not follow: an unknown opcode, a stack underflow or a truncated argument. The parser
//! then reports the actual error.

/// The deepest container nesting of the pickle `b`, as far as the walk could follow it.
pub fn max_depth(b: &[u8]) -> usize {
    walk(b).depth
}

/// What the walk saw of a pickle.
pub struct Seen {
    /// the deepest container nesting
    pub depth: usize,
    /// whether it holds floating-point numbers (`FLOAT`, `BINFLOAT`): serde-pickle orders the
    /// elements of a set with a comparison that is not total on NaN, and the sort panics
    /// (found by the `pickle` fuzz target)
    pub floats: bool,
}

/// Walk the pickle `b` as far as it can be followed.
pub fn walk(b: &[u8]) -> Seen {
    let mut w = Walk::default();
    let _ = w.run(b);
    Seen {
        depth: w.deepest,
        floats: w.floats,
    }
}

#[derive(Default)]
struct Walk {
    stack: Vec<usize>,
    marks: Vec<usize>,
    memo: std::collections::HashMap<u64, usize>,
    deepest: usize,
    floats: bool,
}

/// How an opcode's argument is laid out.
enum Arg {
    None,
    Fixed(usize),
    /// a little-endian length of this many bytes, then that many bytes
    Counted(usize),
    /// text up to a newline (GLOBAL and INST: two lines)
    Lines(usize),
}

#[rustfmt::skip] // one row per argument layout reads better than one opcode per line
fn arg_of(op: u8) -> Option<Arg> {
    Some(match op {
        b'(' | b'.' | b'0' | b'1' | b'2' | b'N' | b'R' | b'b' | b'a' | b'e' | b'd' | b'}'
        | b'l' | b']' | b'o' | b's' | b'u' | b't' | b')' | b'Q' | 0x85..=0x89 | 0x81
        | 0x8f..=0x94 | 0x97 | 0x98 => Arg::None,
        b'I' | b'L' | b'F' | b'S' | b'V' | b'p' | b'g' | b'P' => Arg::Lines(1),
        b'c' | b'i' => Arg::Lines(2),
        b'K' | b'q' | b'h' | 0x80 | 0x82 => Arg::Fixed(1),
        b'M' | 0x83 => Arg::Fixed(2),
        b'J' | b'r' | b'j' | 0x84 => Arg::Fixed(4),
        b'G' | 0x95 => Arg::Fixed(8),
        b'U' | b'C' | 0x8c | 0x8a => Arg::Counted(1),
        b'T' | b'X' | b'B' | 0x8b => Arg::Counted(4),
        0x8d | 0x8e | 0x96 => Arg::Counted(8),
        _ => return None,
    })
}

impl Walk {
    fn push(&mut self, d: usize) {
        self.deepest = self.deepest.max(d);
        self.stack.push(d);
    }

    fn pop(&mut self) -> Option<usize> {
        self.stack.pop()
    }

    /// Everything above the last mark, as the deepest of it (0 when empty).
    fn pop_mark(&mut self) -> Option<usize> {
        let m = self.marks.pop()?;
        if m > self.stack.len() {
            return None;
        }
        Some(self.stack.drain(m..).max().unwrap_or(0))
    }

    /// The top value becomes a container holding something `inner` deep.
    fn fill_top(&mut self, inner: usize) -> Option<()> {
        let top = self.stack.pop()?;
        self.push(top.max(inner + 1));
        Some(())
    }

    fn run(&mut self, b: &[u8]) -> Option<()> {
        let mut i = 0;
        while i < b.len() {
            let op = b[i];
            i += 1;
            let arg_start = i;
            match arg_of(op)? {
                Arg::None => {}
                Arg::Fixed(n) => i += n,
                Arg::Counted(n) => {
                    let len = b.get(i..i + n)?;
                    let mut v = [0u8; 8];
                    v[..n].copy_from_slice(len);
                    i = i
                        .checked_add(n)?
                        .checked_add(usize::try_from(u64::from_le_bytes(v)).ok()?)?;
                }
                Arg::Lines(n) => {
                    for _ in 0..n {
                        i += b.get(i..)?.iter().position(|&c| c == b'\n')? + 1;
                    }
                }
            }
            let arg = b.get(arg_start..i)?;
            self.floats |= matches!(op, b'F' | b'G');
            if self.step(op, arg)? {
                return Some(());
            }
        }
        Some(())
    }

    /// One opcode; `true` at STOP.
    fn step(&mut self, op: u8, arg: &[u8]) -> Option<bool> {
        let int = |a: &[u8]| -> u64 {
            let mut v = [0u8; 8];
            let n = a.len().min(8);
            v[..n].copy_from_slice(&a[..n]);
            u64::from_le_bytes(v)
        };
        match op {
            b'.' => return Some(true),
            b'(' => self.marks.push(self.stack.len()),
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let t = *self.stack.last()?;
                self.push(t);
            }
            b']' | b'}' | b')' | 0x8f => self.push(1),
            b'a' => {
                let v = self.pop()?;
                self.fill_top(v)?;
            }
            b's' => {
                let (v, k) = (self.pop()?, self.pop()?);
                self.fill_top(v.max(k))?;
            }
            b'e' | b'u' | 0x90 => {
                let inner = self.pop_mark()?;
                self.fill_top(inner)?;
            }
            b'l' | b't' | b'd' | 0x91 => {
                let inner = self.pop_mark()?;
                self.push(inner + 1);
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let at = self.stack.len().checked_sub(n)?;
                let inner = self.stack.drain(at..).max().unwrap_or(0);
                self.push(inner + 1);
            }
            // an object from a callable and an argument tuple: as deep as the tuple (its
            // elements, one level down, plus the object's own level); the sets and
            // frozensets of protocols 0-3 are built so, counted one level deeper than they are
            b'R' | 0x81 => {
                let (a, f) = (self.pop()?, self.pop()?);
                self.push(a.max(f));
            }
            0x93 => {
                self.pop()?;
                self.pop()?;
                self.push(0);
            }
            0x92 => {
                let inner = [self.pop()?, self.pop()?, self.pop()?];
                self.push(inner.into_iter().max().unwrap_or(0) + 1);
            }
            b'b' => {
                let v = self.pop()?;
                self.fill_top(v)?;
            }
            b'o' | b'i' => {
                let inner = self.pop_mark()?;
                self.push(inner + 1);
            }
            b'Q' => {
                self.pop()?;
                self.push(0);
            }
            b'p' => {
                let id = std::str::from_utf8(arg).ok()?.trim().parse().ok()?;
                self.memo.insert(id, *self.stack.last()?);
            }
            b'q' | b'r' => {
                self.memo.insert(int(arg), *self.stack.last()?);
            }
            0x94 => {
                let id = self.memo.len() as u64;
                self.memo.insert(id, *self.stack.last()?);
            }
            b'g' => {
                let id: u64 = std::str::from_utf8(arg).ok()?.trim().parse().ok()?;
                self.push(*self.memo.get(&id)?);
            }
            b'h' | b'j' => {
                let d = *self.memo.get(&int(arg))?;
                self.push(d);
            }
            // the protocol, frames and a buffer's read-only flag push nothing
            0x80 | 0x95 | 0x98 => {}
            // every other opcode pushes one scalar (numbers, strings, bytes, None, booleans,
            // globals, extension codes)
            _ => self.push(0),
        }
        Some(false)
    }
}
