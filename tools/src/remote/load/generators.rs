//! The built-in event generators of `dirigo load`, each for a catalog
//! kind's source, as JSON texts: `words` (lines for wordcount), `sensors`
//! (readings), `clicks` (user clicks), `rows` (keyed numbers for the
//! aggregate) and `nexmark` (the NEXMark generator's bids as rows of
//! auction and price, for the aggregate: a running price per auction).
//! Seeded, so a run can be repeated.

use dirigo_bench::nexmark::{self, GeneratorConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Which generator.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Lines of 1 to 8 words from a skewed vocabulary of 10,000 (wordcount's `lines`).
    Words,
    /// `{"sensor", "value"}` over 1,000 sensors (sensors' `readings`).
    Sensors,
    /// `{"user", "page"}` over 10,000 users (clicks' `clicks`).
    Clicks,
    /// `{"key", "value"}` over 1,000 keys (aggregate's `events`).
    Rows,
    /// NEXMark bids as `{"key": auction, "value": price}` (aggregate's `events`).
    Nexmark,
}

/// A generator of one kind.
pub(crate) struct Generator {
    kind: Kind,
    rng: ChaCha8Rng,
    nexmark: nexmark::Generator,
}

impl Generator {
    pub(crate) fn new(kind: Kind, seed: u64) -> Generator {
        let cfg = GeneratorConfig {
            seed,
            ..GeneratorConfig::default()
        };
        Generator {
            kind,
            rng: ChaCha8Rng::seed_from_u64(seed),
            nexmark: nexmark::Generator::new(cfg),
        }
    }

    /// A skewed pick in `0..n`: small numbers far more often (the square
    /// of a uniform draw; a stand-in for Zipf that costs nothing).
    fn skewed(&mut self, n: u64) -> u64 {
        let u: f64 = self.rng.gen();
        ((u * u) * n as f64) as u64
    }

    /// The next event's JSON text.
    pub(crate) fn next_json(&mut self) -> String {
        match self.kind {
            Kind::Words => {
                let n = self.rng.gen_range(1..=8);
                let words: Vec<String> = (0..n)
                    .map(|_| format!("w{}", self.skewed(10_000)))
                    .collect();
                serde_json::Value::String(words.join(" ")).to_string()
            }
            Kind::Sensors => {
                let sensor = self.rng.gen_range(0..1000u32);
                let value: f64 = self.rng.gen();
                format!("{{\"sensor\":{sensor},\"value\":{value}}}")
            }
            Kind::Clicks => {
                let user = self.skewed(10_000);
                let page = self.rng.gen_range(0..500u32);
                format!("{{\"user\":{user},\"page\":{page}}}")
            }
            Kind::Rows => {
                let key = self.skewed(1000);
                let value = self.rng.gen_range(0..100u32);
                format!("{{\"key\":\"k{key}\",\"value\":{value}}}")
            }
            Kind::Nexmark => loop {
                if let nexmark::Event::Bid(b) = self.nexmark.next_event() {
                    break format!("{{\"key\":\"a{}\",\"value\":{}}}", b.auction, b.price);
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generator_gives_json_its_kinds_source_reads() {
        for k in [
            Kind::Words,
            Kind::Sensors,
            Kind::Clicks,
            Kind::Rows,
            Kind::Nexmark,
        ] {
            let mut g = Generator::new(k, 3);
            for _ in 0..100 {
                let v: serde_json::Value = serde_json::from_str(&g.next_json()).unwrap();
                match k {
                    Kind::Words => assert!(v.as_str().is_some_and(|s| s.starts_with('w'))),
                    Kind::Sensors => {
                        let r: dirigo_net::apps::Reading = serde_json::from_value(v).unwrap();
                        assert!(r.sensor < 1000 && (0.0..1.0).contains(&r.value));
                    }
                    Kind::Clicks => {
                        let c: dirigo_net::apps::Click = serde_json::from_value(v).unwrap();
                        assert!(c.user < 10_000);
                    }
                    Kind::Rows | Kind::Nexmark => {
                        assert!(v["key"].is_string() && v["value"].is_number(), "{v}")
                    }
                }
            }
        }
        let a: Vec<String> = (0..5)
            .map(|_| Generator::new(Kind::Rows, 9).next_json())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]), "seeded");
    }
}
