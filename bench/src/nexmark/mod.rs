//! NEXMark: the online-auction benchmark's events (persons, auctions and
//! bids) and generator (`gen`, run as a client feed or as a source on the
//! shards: `feed`), and its queries as Dirigo apps (`queries`).
//!
//! The generator follows the benchmark's specification as the Apache Beam
//! and Flink suites implement it: of every 50 events, 1 person, 3 auctions
//! and 46 bids; ids from 1000 (categories from 10, 5 of them); sellers and
//! bidders drawn from the active people with a hot fraction, bids on the
//! auctions in flight with a hot fraction; prices `round(10^(6u) * 100)`
//! cents; event time from the generator's clock at the configured rate,
//! each event up to a bound earlier (out of order within it).

pub mod feed;
pub mod gen;
pub mod queries;

pub use gen::{Generator, GeneratorConfig};

use dirigo_engine::Time;

/// A person: someone who sells or bids.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Person {
    /// Its id (from `FIRST_PERSON_ID`).
    pub id: u64,
    /// First and last name.
    pub name: String,
    /// An address.
    pub email: String,
    /// A card number.
    pub credit_card: String,
    /// Where they live.
    pub city: String,
    /// Their US state.
    pub state: String,
    /// Event time, µs.
    pub date_time: Time,
}

/// An auction a person opened.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Auction {
    /// Its id (from `FIRST_AUCTION_ID`).
    pub id: u64,
    /// What is sold.
    pub item_name: String,
    /// The first bid, cents.
    pub initial_bid: u64,
    /// The least winning price, cents.
    pub reserve: u64,
    /// Event time, µs.
    pub date_time: Time,
    /// When bidding ends, µs.
    pub expires: Time,
    /// The person selling.
    pub seller: u64,
    /// Its category (from `FIRST_CATEGORY_ID`).
    pub category: u64,
}

/// A bid on an auction (price in cents).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bid {
    /// The auction bid on.
    pub auction: u64,
    /// The person bidding.
    pub bidder: u64,
    /// The price, cents.
    pub price: u64,
    /// Where the bid came from.
    pub channel: String,
    /// Event time, µs.
    pub date_time: Time,
}

/// One NEXMark event.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    /// A new person.
    Person(Person),
    /// A new auction.
    Auction(Auction),
    /// A bid.
    Bid(Bid),
}

impl Event {
    /// Its event time, µs.
    pub fn time(&self) -> Time {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }
}
