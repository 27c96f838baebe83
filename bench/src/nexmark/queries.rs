//! NEXMark's queries as Dirigo apps over one source `events` on event
//! time: Q0 (pass-through), Q1 (currency conversion), Q2 (selection), Q3
//! (local item suggestion: an incremental join), Q4 (average price per
//! category: auctions joined with their bids until they close, then a
//! window), Q5 (hot items: a sliding window, then the top per window), Q6
//! (average selling price by seller: the same winners, the last ten per
//! seller in event-time order), Q7 (highest bid: a tumbling window) and Q8
//! (monitor new users: a windowed join). Windows are in µs of event
//! time, scaled down so that a few seconds of generated events span
//! several of them.

use std::marker::PhantomData;
use std::time::Duration;

use dirigo_engine::{
    key_hash, App, AppBuilder, Context, EventTime, FullWindow, Function, Keyed, KeyedJoin, Merged,
    Side, SinkReceiver, Stream, Time, Window, WindowJoin, Windows,
};

use super::{Auction, Bid, Event, Person};

/// Q5's sliding window, µs (the benchmark's 60 min, scaled).
pub const Q5_SIZE: Time = 2_000_000;
/// Q5's slide, µs (a divisor of `Q5_SIZE`).
pub const Q5_SLIDE: Time = 500_000;
/// Q7's tumbling window, µs.
pub const Q7_SIZE: Time = 1_000_000;
/// Q8's tumbling window, µs (the benchmark's 12 hours, scaled).
pub const Q8_SIZE: Time = 1_000_000;
/// Q2 keeps the bids of auctions whose id this divides.
pub const Q2_SKIP: u64 = 123;

/// A stateless step: each input to at most one keyed output.
struct Map<I, O> {
    f: fn(u64, I) -> Option<(u64, O)>,
    _t: PhantomData<fn(I, O)>,
}

impl<I: Send + 'static, O: Clone + Send + 'static> Function for Map<I, O> {
    type In = I;
    type Out = O;
    type State = Merged<()>;
    fn on_message(&self, _: &mut Merged<()>, key: u64, v: I, ctx: &mut Context<'_, O>) {
        if let Some((k, o)) = (self.f)(key, v) {
            ctx.emit(k, o);
        }
    }
}

fn map<I: Send + 'static, O: Clone + Send + 'static>(
    b: &mut AppBuilder,
    name: &str,
    input: Stream<I>,
    f: fn(u64, I) -> Option<(u64, O)>,
) -> Stream<O> {
    b.operator(name, Map { f, _t: PhantomData }, &[input])
}

/// The key hash of a number (ids, window starts).
pub fn id_key(id: u64) -> u64 {
    key_hash(&id.to_le_bytes())
}

/// A builder with the `events` source on event time, out of order within
/// `bound` µs.
fn builder(name: &str, bound: Time) -> (AppBuilder, Stream<Event>) {
    let mut b = AppBuilder::new(name).slo(Duration::from_millis(500));
    let events = b.source::<Event>("events");
    b.event_time(events, EventTime::new(Event::time).out_of_orderness(bound));
    (b, events)
}

fn bids(b: &mut AppBuilder, events: Stream<Event>) -> Stream<Bid> {
    map(b, "bids", events, |k, e| match e {
        Event::Bid(x) => Some((k, x)),
        _ => None,
    })
}

/// Q0: every event, unchanged.
pub fn q0(name: &str, bound: Time) -> (App, SinkReceiver<Event>) {
    let (mut b, events) = builder(name, bound);
    let out = map(&mut b, "pass", events, |k, e| Some((k, e)));
    let rx = b.sink("out", out);
    (b.build().expect("a valid app"), rx)
}

/// Q1's row: a bid with its price in euro cents.
pub type Q1 = (u64, u64, u64, Time);

/// Q1: every bid, its price converted to euros (× 0.908).
pub fn q1(name: &str, bound: Time) -> (App, SinkReceiver<Q1>) {
    let (mut b, events) = builder(name, bound);
    let bids = bids(&mut b, events);
    let out = map(&mut b, "euro", bids, |k, x| {
        Some((k, (x.auction, x.bidder, x.price * 908 / 1000, x.date_time)))
    });
    let rx = b.sink("out", out);
    (b.build().expect("a valid app"), rx)
}

/// Q2: (auction, price) of the bids on auctions `Q2_SKIP` divides.
pub fn q2(name: &str, bound: Time) -> (App, SinkReceiver<(u64, u64)>) {
    let (mut b, events) = builder(name, bound);
    let out = map(&mut b, "select", events, |k, e| match e {
        Event::Bid(x) if x.auction % Q2_SKIP == 0 => Some((k, (x.auction, x.price))),
        _ => None,
    });
    let rx = b.sink("out", out);
    (b.build().expect("a valid app"), rx)
}

/// Q3's row: (name, city, state, auction).
pub type Q3 = (String, String, String, u64);

/// Q3: sellers in OR, ID or CA with their auctions of category 10, as
/// each pair forms (an incremental join by seller).
pub fn q3(name: &str, bound: Time) -> (App, SinkReceiver<Q3>) {
    let (mut b, events) = builder(name, bound);
    let people = map(&mut b, "people", events, |_, e| match e {
        Event::Person(p) if ["OR", "ID", "CA"].contains(&p.state.as_str()) => {
            Some((id_key(p.id), p))
        }
        _ => None,
    });
    let auctions = map(&mut b, "auctions", events, |_, e| match e {
        Event::Auction(a) if a.category == 10 => Some((id_key(a.seller), a)),
        _ => None,
    });
    let joined = b.join(
        "by-seller",
        KeyedJoin::<Person, Auction>::default(),
        people,
        auctions,
    );
    let out = map(&mut b, "row", joined, |k, j| {
        Some((k, (j.left.name, j.left.city, j.left.state, j.right.id)))
    });
    let rx = b.sink("out", out);
    (b.build().expect("a valid app"), rx)
}

/// Q5's row: (window start, auction, bids).
pub type Q5 = (Time, u64, u64);

/// Q5: per sliding window, the auction with the most bids (the lowest id
/// among ties).
pub fn q5(name: &str, bound: Time) -> (App, SinkReceiver<Q5>) {
    let (mut b, events) = builder(name, bound);
    let bids = bids(&mut b, events);
    let by_auction = map(&mut b, "by-auction", bids, |_, x| {
        Some((id_key(x.auction), x))
    });
    let w = Window::new(
        Windows::Sliding {
            size: Q5_SIZE,
            slide: Q5_SLIDE,
        },
        |x: &Bid| x.date_time,
        FullWindow::new(|xs: &[Bid]| (xs[0].auction, xs.len() as u64)),
    );
    let (counts, _late) = b.window("counts", w, by_auction);
    let per_window = map(&mut b, "by-window", counts, |_, r| {
        Some((id_key(r.start), (r.start, r.value.0, r.value.1)))
    });
    let top = Window::new(
        Windows::Tumbling { size: Q5_SLIDE },
        |r: &Q5| r.0 + Q5_SIZE - 1,
        FullWindow::new(|rs: &[Q5]| {
            *rs.iter()
                .min_by_key(|r| (std::cmp::Reverse(r.2), r.1))
                .expect("a window holds a result")
        }),
    );
    let (top, _late) = b.window("top", top, per_window);
    let out = map(&mut b, "row", top, |k, r| Some((k, r.value)));
    let rx = b.sink("out", out);
    (b.build().expect("a valid app"), rx)
}

/// Q7's row: (window start, auction, price, bidder).
pub type Q7 = (Time, u64, u64, u64);

/// Q7: per tumbling window, the highest bid (the lowest auction, then
/// bidder, among ties).
pub fn q7(name: &str, bound: Time) -> (App, SinkReceiver<Q7>) {
    let (app, rx, _late) = q7_with_late(name, bound);
    (app, rx)
}

/// Q7 with its late bids (later than the watermark past their window) on
/// a sink of their own, `late`.
pub fn q7_with_late(name: &str, bound: Time) -> (App, SinkReceiver<Q7>, SinkReceiver<Bid>) {
    let (mut b, events) = builder(name, bound);
    let bids = bids(&mut b, events);
    let by_window = map(&mut b, "by-window", bids, |_, x| {
        Some((id_key(x.date_time / Q7_SIZE), x))
    });
    let w = Window::new(
        Windows::Tumbling { size: Q7_SIZE },
        |x: &Bid| x.date_time,
        FullWindow::new(|xs: &[Bid]| {
            let x = xs
                .iter()
                .min_by_key(|x| (std::cmp::Reverse(x.price), x.auction, x.bidder))
                .expect("a window holds a bid");
            (x.auction, x.price, x.bidder)
        }),
    );
    let (top, late) = b.window("highest", w, by_window);
    let out = map(&mut b, "row", top, |k, r| {
        Some((k, (r.start, r.value.0, r.value.1, r.value.2)))
    });
    let rx = b.sink("out", out);
    let late = b.sink("late", late);
    (b.build().expect("a valid app"), rx, late)
}

/// Q8's row: (person, name, auction, window start).
pub type Q8 = (u64, String, u64, Time);

/// Q8: people who opened an auction in the tumbling window they joined in
/// (a windowed join of people and auctions by seller).
pub fn q8(name: &str, bound: Time) -> (App, SinkReceiver<Q8>) {
    let (mut b, events) = builder(name, bound);
    let people = map(&mut b, "people", events, |_, e| match e {
        Event::Person(p) => Some((id_key(p.id), p)),
        _ => None,
    });
    let auctions = map(&mut b, "auctions", events, |_, e| match e {
        Event::Auction(a) => Some((id_key(a.seller), a)),
        _ => None,
    });
    let join = WindowJoin::new(
        Windows::Tumbling { size: Q8_SIZE },
        |p: &Person| p.date_time,
        |a: &Auction| a.date_time,
    )
    .expect("a tumbling window joins");
    let joined = b.join("new-users", join, people, auctions);
    let out = map(&mut b, "row", joined, |k, j| {
        let start = j.left.date_time / Q8_SIZE * Q8_SIZE;
        Some((k, (j.left.id, j.left.name, j.right.id, start)))
    });
    let rx = b.sink("out", out);
    (b.build().expect("a valid app"), rx)
}

/// A closed auction's winning bid: (auction, category, seller, price,
/// the auction's end).
pub type Winner = (u64, u64, u64, u64, Time);

/// A key's auction and the bids on it so far (`Winning`).
#[derive(Default)]
pub struct Open {
    auction: Option<Auction>,
    bids: Vec<Bid>,
}

/// Per auction: when it closes (the watermark passes its end), its
/// highest bid at or over the reserve placed while it was open (the
/// earliest among equal prices), if any. Bids may come before their
/// auction; one its auction cannot have come for (the watermark passed
/// it, and an auction later than the watermark starts after it) is
/// dropped.
struct Winning;

impl Function for Winning {
    type In = Side<Auction, Bid>;
    type Out = Winner;
    type State = Keyed<Open>;
    fn on_message(
        &self,
        st: &mut Keyed<Open>,
        key: u64,
        e: Self::In,
        ctx: &mut Context<'_, Winner>,
    ) {
        let open = st.entry(key);
        let at = match e {
            Side::Left(a) => {
                let end = a.expires;
                open.auction = Some(a);
                end
            }
            Side::Right(b) => {
                let t = b.date_time;
                open.bids.push(b);
                match &open.auction {
                    Some(a) => a.expires,
                    None => t,
                }
            }
        };
        assert!(ctx.set_timer(at), "under the timer limit");
    }

    fn on_timer(&self, st: &mut Keyed<Open>, key: u64, at: Time, ctx: &mut Context<'_, Winner>) {
        let Some(open) = st.get_mut(key) else { return };
        let Some(a) = &open.auction else {
            open.bids.retain(|b| b.date_time > at);
            if open.bids.is_empty() {
                st.remove(key);
            }
            return;
        };
        if a.expires > at {
            return; // a bid's timer, before its auction came
        }
        let best = open
            .bids
            .iter()
            .filter(|b| {
                a.date_time <= b.date_time && b.date_time <= a.expires && b.price >= a.reserve
            })
            .min_by_key(|b| (std::cmp::Reverse(b.price), b.date_time, b.bidder));
        if let Some(b) = best {
            ctx.emit(key, (a.id, a.category, a.seller, b.price, a.expires));
        }
        st.remove(key);
    }
}

/// The closed auctions' winners, keyed by auction.
fn winners(b: &mut AppBuilder, events: Stream<Event>) -> Stream<Winner> {
    let auctions = map(b, "auctions", events, |_, e| match e {
        Event::Auction(a) => Some((id_key(a.id), a)),
        _ => None,
    });
    let bids = map(b, "bids", events, |_, e| match e {
        Event::Bid(x) => Some((id_key(x.auction), x)),
        _ => None,
    });
    b.join("winning", Winning, auctions, bids)
}

/// Q4's row: (category, window start of the auctions' ends, mean price).
pub type Q4 = (u64, Time, u64);

/// Q4's window over the closing times, µs.
pub const Q4_SIZE: Time = 1_000_000;

/// Q4: the mean winning price per category, over the auctions that closed
/// in each tumbling window (a windowed form of the benchmark's running
/// mean, whose intermediate values depend on arrival order).
pub fn q4(name: &str, bound: Time) -> (App, SinkReceiver<Q4>) {
    let (mut b, events) = builder(name, bound);
    let won = winners(&mut b, events);
    let by_category = map(&mut b, "by-category", won, |_, w: Winner| {
        Some((id_key(w.1), w))
    });
    let w = Window::new(
        Windows::Tumbling { size: Q4_SIZE },
        |w: &Winner| w.4,
        FullWindow::new(|ws: &[Winner]| {
            let sum: u64 = ws.iter().map(|w| w.3).sum();
            (ws[0].1, sum / ws.len() as u64)
        }),
    );
    let (means, _late) = b.window("mean", w, by_category);
    let out = map(&mut b, "row", means, |k, r| {
        Some((k, (r.value.0, r.start, r.value.1)))
    });
    let rx = b.sink("out", out);
    (b.build().expect("a valid app"), rx)
}

/// Q6's row: (seller, auction closed, mean of its last ten winning prices).
pub type Q6 = (u64, u64, u64);

/// A seller's closed auctions waiting for the watermark, and its last ten
/// winning prices.
#[derive(Default)]
pub struct SellerPrices {
    waiting: Vec<Winner>,
    last: std::collections::VecDeque<u64>,
}

/// Per seller, in order of the auctions' ends (then ids): the mean of its
/// last ten winning prices, after each.
struct LastTen;

impl Function for LastTen {
    type In = Winner;
    type Out = Q6;
    type State = Keyed<SellerPrices>;
    fn on_message(
        &self,
        st: &mut Keyed<SellerPrices>,
        key: u64,
        w: Winner,
        ctx: &mut Context<'_, Q6>,
    ) {
        assert!(ctx.set_timer(w.4), "under the timer limit");
        st.entry(key).waiting.push(w);
    }

    fn on_timer(
        &self,
        st: &mut Keyed<SellerPrices>,
        key: u64,
        at: Time,
        ctx: &mut Context<'_, Q6>,
    ) {
        let Some(s) = st.get_mut(key) else { return };
        let mut due: Vec<Winner> = Vec::new();
        s.waiting.retain(|w| {
            let d = w.4 <= at;
            if d {
                due.push(*w);
            }
            !d
        });
        due.sort_by_key(|w| (w.4, w.0));
        for w in due {
            s.last.push_back(w.3);
            if s.last.len() > 10 {
                s.last.pop_front();
            }
            let mean = s.last.iter().sum::<u64>() / s.last.len() as u64;
            ctx.emit(key, (w.2, w.0, mean));
        }
    }
}

/// Q6: per seller, the mean selling price of its last ten closed auctions,
/// after each one closes.
pub fn q6(name: &str, bound: Time) -> (App, SinkReceiver<Q6>) {
    let (mut b, events) = builder(name, bound);
    let won = winners(&mut b, events);
    let by_seller = map(&mut b, "by-seller", won, |_, w: Winner| {
        Some((id_key(w.2), w))
    });
    let out = b.operator("last-ten", LastTen, &[by_seller]);
    let rx = b.sink("out", out);
    (b.build().expect("a valid app"), rx)
}
