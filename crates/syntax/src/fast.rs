//! A fast path for the program lines that make up almost every program: canonical
//! `targets = step.Op(k=v, ..).apply(arg)`, name lists, comprehensions and `return`, matched
//! straight from the token slice into the program tree.
//!
//! Why: the agent verifies thousands of programs, and the general route (LR parse of a Python
//! statement, then narrowing to STeP) costs a dozen unit reductions and several allocations per
//! name. This matcher accepts only a strict subset of what the grammar accepts and builds the
//! same tree with the same spans; on anything unusual (including every mistake) it returns
//! `None` and the grammar handles the line, so diagnostics come from one place only. Property
//! tests check that both routes build identical trees.

use crate::ast::*;
use crate::lexer::{Spanned, Tok};
use crate::ops;
use crate::span::Span;

// One value per parsed line, moved straight into the program: boxing the larger variant would
// add an allocation per statement on the agent's hot path for no saving.
#[allow(clippy::large_enum_variant)]
pub(crate) enum FastLine {
    Stmt(Stmt),
    Return(Return),
}

struct Cur<'t, 'a> {
    toks: &'t [Spanned<'a>],
    i: usize,
}

impl<'a> Cur<'_, 'a> {
    fn peek(&self) -> Option<Tok<'a>> {
        self.toks.get(self.i).map(|t| t.1)
    }
    fn peek_at(&self, k: usize) -> Option<Tok<'a>> {
        self.toks.get(self.i + k).map(|t| t.1)
    }
    fn eat(&mut self, t: Tok<'_>) -> Option<(usize, usize)> {
        let x = self.toks.get(self.i)?;
        if x.1 == t {
            self.i += 1;
            Some((x.0, x.2))
        } else {
            None
        }
    }
    fn name(&mut self) -> Option<Ident> {
        let x = self.toks.get(self.i)?;
        match x.1 {
            Tok::Name(n) => {
                self.i += 1;
                Some(Ident::new(n, Span::new(x.0, x.2)))
            }
            _ => None,
        }
    }
    fn word(&mut self, w: &str) -> Option<(usize, usize)> {
        let x = self.toks.get(self.i)?;
        match x.1 {
            Tok::Name(n) if n == w => {
                self.i += 1;
                Some((x.0, x.2))
            }
            _ => None,
        }
    }
    fn done(&self) -> bool {
        self.i == self.toks.len()
    }
}

pub(crate) fn line(toks: &[Spanned<'_>]) -> Option<FastLine> {
    let (lo, hi) = (toks.first()?.0, toks.last()?.2);
    let span = Span::new(lo, hi);
    let mut c = Cur { toks, i: 0 };
    if c.eat(Tok::Return).is_some() {
        let mut values = vec![c.name()?];
        while c.eat(Tok::Comma).is_some() {
            values.push(c.name()?);
        }
        return c
            .done()
            .then_some(FastLine::Return(Return { values, span }));
    }
    let mut targets = vec![c.name()?];
    while c.eat(Tok::Comma).is_some() {
        targets.push(c.name()?);
    }
    c.eat(Tok::Assign)?;
    let rhs = if c.peek() == Some(Tok::LBrack) {
        if c.peek_at(1) == Some(Tok::Name("step")) {
            comprehension(&mut c)?
        } else {
            name_list(&mut c)?
        }
    } else {
        Rhs::Op(opcall(&mut c)?)
    };
    c.done()
        .then_some(FastLine::Stmt(Stmt { targets, rhs, span }))
}

fn name_list(c: &mut Cur<'_, '_>) -> Option<Rhs> {
    let (lo, _) = c.eat(Tok::LBrack)?;
    let mut names = Vec::new();
    if let Some((_, hi)) = c.eat(Tok::RBrack) {
        return Some(Rhs::List(names, Span::new(lo, hi)));
    }
    loop {
        names.push(c.name()?);
        if let Some((_, hi)) = c.eat(Tok::RBrack) {
            return Some(Rhs::List(names, Span::new(lo, hi)));
        }
        c.eat(Tok::Comma)?;
    }
}

fn comprehension(c: &mut Cur<'_, '_>) -> Option<Rhs> {
    let (lo, _) = c.eat(Tok::LBrack)?;
    let body = opcall(c)?;
    c.eat(Tok::For)?;
    let mut vars = vec![c.name()?];
    while c.eat(Tok::Comma).is_some() {
        vars.push(c.name()?);
    }
    c.eat(Tok::In)?;
    let iter = if c.peek() == Some(Tok::Name("zip")) && c.peek_at(1) == Some(Tok::LParen) {
        let (zlo, _) = c.word("zip")?;
        c.eat(Tok::LParen)?;
        let mut names = Vec::new();
        let zhi = loop {
            if let Some((_, h)) = c.eat(Tok::RParen) {
                break h;
            }
            names.push(c.name()?);
            if let Some((_, h)) = c.eat(Tok::RParen) {
                break h;
            }
            c.eat(Tok::Comma)?;
        };
        CompIter::Zip(names, Span::new(zlo, zhi))
    } else {
        CompIter::Name(c.name()?)
    };
    let (_, hi) = c.eat(Tok::RBrack)?;
    Some(Rhs::Comp(Comprehension {
        body,
        vars,
        iter,
        span: Span::new(lo, hi),
    }))
}

fn opcall(c: &mut Cur<'_, '_>) -> Option<OpCall> {
    let (lo, _) = c.word("step")?;
    c.eat(Tok::Dot)?;
    let op = c.name()?;
    let info = ops::lookup(&op.name)?;
    c.eat(Tok::LParen)?;
    let mut kwargs: Vec<Kwarg> = Vec::new();
    let head_hi = loop {
        if let Some((_, h)) = c.eat(Tok::RParen) {
            break h;
        }
        let key = c.name()?;
        if !info.params.contains(&key.name.as_str())
            || kwargs.iter().any(|k| k.key.name == key.name)
        {
            return None;
        }
        c.eat(Tok::Assign)?;
        let value = kwvalue(c, 0)?;
        kwargs.push(Kwarg {
            span: key.span.to(value.span()),
            key,
            value,
        });
        if let Some((_, h)) = c.eat(Tok::RParen) {
            break h;
        }
        c.eat(Tok::Comma)?;
    };
    c.eat(Tok::Dot)?;
    c.word("apply")?;
    c.eat(Tok::LParen)?;
    let arg = arg(c, 0)?;
    let (_, hi) = c.eat(Tok::RParen)?;
    Some(OpCall {
        op,
        kwargs,
        arg,
        head_span: Span::new(lo, head_hi),
        span: Span::new(lo, hi),
    })
}

fn int(s: &str) -> Option<i64> {
    if s.contains('_') {
        return None;
    }
    s.parse().ok()
}

/// Nesting is capped so hostile input cannot recurse deeply here (the grammar route reports
/// it properly).
const MAX_NEST: usize = 16;

fn kwvalue(c: &mut Cur<'_, '_>, depth: usize) -> Option<KwValue> {
    let t = c.toks.get(c.i)?;
    match t.1 {
        Tok::Int(s) => {
            c.i += 1;
            Some(KwValue::Int(int(s)?, Span::new(t.0, t.2)))
        }
        Tok::Minus => {
            let n = c.toks.get(c.i + 1)?;
            let Tok::Int(s) = n.1 else { return None };
            c.i += 2;
            Some(KwValue::Int(int(s)?.checked_neg()?, Span::new(t.0, n.2)))
        }
        Tok::Name(_) => c.name().map(KwValue::Name),
        Tok::LBrack | Tok::LParen if depth < MAX_NEST => {
            let list = t.1 == Tok::LBrack;
            let close = if list { Tok::RBrack } else { Tok::RParen };
            c.i += 1;
            let mut items = Vec::new();
            let mut commas = 0;
            let hi = loop {
                if let Some((_, h)) = c.eat(close) {
                    break h;
                }
                items.push(kwvalue(c, depth + 1)?);
                if let Some((_, h)) = c.eat(close) {
                    break h;
                }
                c.eat(Tok::Comma)?;
                commas += 1;
            };
            let span = Span::new(t.0, hi);
            if list {
                Some(KwValue::List(items, span))
            } else if items.is_empty() || commas > 0 {
                Some(KwValue::Tuple(items, span))
            } else {
                // `(x)` is a parenthesised value, not a tuple: leave it to the grammar.
                None
            }
        }
        _ => None,
    }
}

fn arg(c: &mut Cur<'_, '_>, depth: usize) -> Option<Arg> {
    let t = c.toks.get(c.i)?;
    match t.1 {
        Tok::Name(_) => c.name().map(Arg::Name),
        Tok::LParen if depth < MAX_NEST => {
            c.i += 1;
            let mut items = Vec::new();
            let mut commas = 0;
            let hi = loop {
                if let Some((_, h)) = c.eat(Tok::RParen) {
                    break h;
                }
                items.push(arg(c, depth + 1)?);
                if let Some((_, h)) = c.eat(Tok::RParen) {
                    break h;
                }
                c.eat(Tok::Comma)?;
                commas += 1;
            };
            (items.is_empty() || commas > 0).then(|| Arg::Tuple(items, Span::new(t.0, hi)))
        }
        _ => None,
    }
}
