//! The NEXMark event generator: event `n` of a seeded run, deterministic.

use dirigo_engine::Time;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Auction, Bid, Event, Person};

const PERSON_PROPORTION: u64 = 1;
const AUCTION_PROPORTION: u64 = 3;
const BID_PROPORTION: u64 = 46;
const TOTAL_PROPORTION: u64 = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;
/// The first person's id.
pub const FIRST_PERSON_ID: u64 = 1000;
/// The first auction's id.
pub const FIRST_AUCTION_ID: u64 = 1000;
/// The first category's id.
pub const FIRST_CATEGORY_ID: u64 = 10;
/// How many categories there are.
pub const NUM_CATEGORIES: u64 = 5;
const HOT_AUCTION_RATIO: u64 = 2;
const HOT_BIDDER_RATIO: u64 = 4;
const HOT_SELLER_RATIO: u64 = 4;
const NUM_IN_FLIGHT_AUCTIONS: u64 = 100;
const NUM_ACTIVE_PEOPLE: u64 = 1000;
const PERSON_ID_LEAD: u64 = 10;
const AUCTION_ID_LEAD: u64 = 10;
const US_STATES: &[&str] = &["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: &[&str] = &[
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const FIRST_NAMES: &[&str] = &[
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: &[&str] = &[
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
const CHANNELS: &[&str] = &["Google", "Facebook", "Baidu", "Apple"];

/// How a run generates.
#[derive(Clone, Copy, Debug)]
pub struct GeneratorConfig {
    /// Seeds every choice.
    pub seed: u64,
    /// Events per second of event time.
    pub rate: u64,
    /// Event time of event 0, µs.
    pub base_time: Time,
    /// An event's time is up to this much (µs) before the generator's
    /// clock: out of order within it.
    pub out_of_order: Time,
    /// Mean auction length, µs.
    pub auction_length: Time,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 1,
            rate: 10_000,
            base_time: 1_000_000_000,
            out_of_order: 0,
            auction_length: 2_000_000,
        }
    }
}

/// Generates NEXMark events in order of their number.
pub struct Generator {
    cfg: GeneratorConfig,
    next: u64,
    rng: ChaCha8Rng,
}

impl Generator {
    /// A generator at event 0.
    pub fn new(cfg: GeneratorConfig) -> Self {
        Generator {
            cfg,
            next: 0,
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
        }
    }

    /// The generator's clock at event `n`, µs.
    fn clock(&self, n: u64) -> Time {
        self.cfg.base_time + n * 1_000_000 / self.cfg.rate.max(1)
    }

    /// The next `n` events.
    pub fn take(&mut self, n: usize) -> Vec<Event> {
        (0..n).map(|_| self.next_event()).collect()
    }

    /// The next event.
    pub fn next_event(&mut self) -> Event {
        let n = self.next;
        self.next += 1;
        let back = match self.cfg.out_of_order {
            0 => 0,
            b => self.rng.gen_range(0..b),
        };
        let ts = self.clock(n).saturating_sub(back);
        let offset = n % TOTAL_PROPORTION;
        if offset < PERSON_PROPORTION {
            Event::Person(self.person(n, ts))
        } else if offset < PERSON_PROPORTION + AUCTION_PROPORTION {
            Event::Auction(self.auction(n, ts))
        } else {
            Event::Bid(self.bid(n, ts))
        }
    }

    fn person(&mut self, n: u64, ts: Time) -> Person {
        let id = last_person(n) + FIRST_PERSON_ID;
        let r = &mut self.rng;
        let name = format!(
            "{} {}",
            FIRST_NAMES[r.gen_range(0..FIRST_NAMES.len())],
            LAST_NAMES[r.gen_range(0..LAST_NAMES.len())]
        );
        Person {
            id,
            email: format!("{}@{}.com", name.replace(' ', "."), id % 97),
            name,
            credit_card: format!(
                "{:04} {:04} {:04} {:04}",
                r.gen_range(0..10_000),
                r.gen_range(0..10_000),
                r.gen_range(0..10_000),
                r.gen_range(0..10_000)
            ),
            city: US_CITIES[r.gen_range(0..US_CITIES.len())].to_owned(),
            state: US_STATES[r.gen_range(0..US_STATES.len())].to_owned(),
            date_time: ts,
        }
    }

    fn auction(&mut self, n: u64, ts: Time) -> Auction {
        let id = last_auction(n) + FIRST_AUCTION_ID;
        let seller = if self.rng.gen_range(0..HOT_SELLER_RATIO) > 0 {
            last_person(n) / HOT_SELLER_RATIO * HOT_SELLER_RATIO
        } else {
            self.next_person(n)
        } + FIRST_PERSON_ID;
        let initial_bid = price(&mut self.rng);
        let len = self.rng.gen_range(1..=2 * self.cfg.auction_length.max(1));
        Auction {
            id,
            item_name: format!("item-{}", id % 1000),
            initial_bid,
            reserve: initial_bid + price(&mut self.rng),
            date_time: ts,
            expires: ts + len,
            seller,
            category: FIRST_CATEGORY_ID + self.rng.gen_range(0..NUM_CATEGORIES),
        }
    }

    fn bid(&mut self, n: u64, ts: Time) -> Bid {
        let auction = if self.rng.gen_range(0..HOT_AUCTION_RATIO) > 0 {
            last_auction(n) / HOT_AUCTION_RATIO * HOT_AUCTION_RATIO
        } else {
            let max = last_auction(n);
            let min = max.saturating_sub(NUM_IN_FLIGHT_AUCTIONS);
            min + self.rng.gen_range(0..max - min + 1 + AUCTION_ID_LEAD)
        } + FIRST_AUCTION_ID;
        let bidder = if self.rng.gen_range(0..HOT_BIDDER_RATIO) > 0 {
            last_person(n) / HOT_BIDDER_RATIO * HOT_BIDDER_RATIO + 1
        } else {
            self.next_person(n)
        } + FIRST_PERSON_ID;
        Bid {
            auction,
            bidder,
            price: price(&mut self.rng),
            channel: CHANNELS[self.rng.gen_range(0..CHANNELS.len())].to_owned(),
            date_time: ts,
        }
    }

    /// A person among the active ones (or a little ahead of them).
    fn next_person(&mut self, n: u64) -> u64 {
        let people = last_person(n) + 1;
        let active = people.min(NUM_ACTIVE_PEOPLE);
        people - active + self.rng.gen_range(0..active + PERSON_ID_LEAD)
    }
}

/// The base-0 id of the last person generated by event `n`.
fn last_person(n: u64) -> u64 {
    let epoch = n / TOTAL_PROPORTION;
    // Past the epoch's people, its last one.
    let offset = match n % TOTAL_PROPORTION {
        o if o >= PERSON_PROPORTION => PERSON_PROPORTION - 1,
        o => o,
    };
    epoch * PERSON_PROPORTION + offset
}

/// The base-0 id of the last auction generated by event `n`.
fn last_auction(n: u64) -> u64 {
    let (mut epoch, mut offset) = (n / TOTAL_PROPORTION, n % TOTAL_PROPORTION);
    if offset < PERSON_PROPORTION {
        if epoch == 0 {
            return 0;
        }
        epoch -= 1;
        offset = AUCTION_PROPORTION - 1;
    } else if offset >= PERSON_PROPORTION + AUCTION_PROPORTION {
        offset = AUCTION_PROPORTION - 1;
    } else {
        offset -= PERSON_PROPORTION;
    }
    epoch * AUCTION_PROPORTION + offset
}

/// A price in cents: `round(10^(6u) * 100)`.
fn price(r: &mut ChaCha8Rng) -> u64 {
    (10f64.powf(r.gen::<f64>() * 6.0) * 100.0).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportions_ids_and_times_follow_the_spec() {
        let mut g = Generator::new(GeneratorConfig {
            out_of_order: 500,
            ..Default::default()
        });
        let evs = g.take(5_000);
        let (mut p, mut a, mut b) = (0, 0, 0);
        let mut clock_ok = true;
        for (n, e) in evs.iter().enumerate() {
            match e {
                Event::Person(x) => {
                    assert_eq!(x.id, FIRST_PERSON_ID + p);
                    p += 1;
                }
                Event::Auction(x) => {
                    assert_eq!(x.id, FIRST_AUCTION_ID + a);
                    assert!((FIRST_CATEGORY_ID..FIRST_CATEGORY_ID + NUM_CATEGORIES)
                        .contains(&x.category));
                    assert!(
                        x.seller < FIRST_PERSON_ID + p + PERSON_ID_LEAD
                            && x.reserve >= x.initial_bid
                    );
                    a += 1;
                }
                Event::Bid(x) => {
                    assert!(x.auction < FIRST_AUCTION_ID + a + AUCTION_ID_LEAD);
                    assert!(x.price >= 100 && x.price <= 100_000_000);
                    b += 1;
                }
            }
            let clock = 1_000_000_000 + n as u64 * 100;
            clock_ok &= e.time() <= clock && e.time() + 500 > clock;
        }
        assert_eq!((p, a, b), (100, 300, 4_600));
        assert!(clock_ok, "event time within the bound behind the clock");
        // Deterministic.
        let again = Generator::new(GeneratorConfig {
            out_of_order: 500,
            ..Default::default()
        })
        .take(5_000);
        assert_eq!(evs, again);
    }
}
