// gatekeeper money for people: the dashboard's copy of gatekeeper.money.format_money, with the
// same rules and table (tests/test_money_format.py runs both on the same amounts):
// the currency's minor units (USD 2, JPY 0, KWD 3), rounded half-even as invoice lines are;
// more decimals only for an exact unit price or an amount that is not zero but would round to
// zero. Exact: the API's decimal strings are read as integer nano-units (BigInt), never floats.
"use strict";

(function (root) {
  const NANO = 1000000000n;
  const MINOR = {
    BHD: 3, CLP: 0, IQD: 3, ISK: 0, JOD: 3, JPY: 0, KRW: 0, KWD: 3, LYD: 3, OMR: 3, PYG: 0,
    TND: 3, UGX: 0, VND: 0, XAF: 0, XOF: 0,
  };
  const SYMBOL = { USD: "$", EUR: "\u20ac", GBP: "\u00a3", JPY: "\u00a5" };

  function minorUnits(currency) {
    const m = MINOR[String(currency || "USD").toUpperCase()];
    return m === undefined ? 2 : m;
  }

  // "12.5", "-0.000000001", 3 (a number: to 9 decimals) -> nano-units as a BigInt; null if not money
  function toNano(amount) {
    const text = typeof amount === "number" ? amount.toFixed(9) : String(amount).trim();
    const match = /^(-?)(\d+)(?:\.(\d{0,9}))?$/.exec(text);
    if (!match) return null;
    const nano = BigInt(match[2]) * NANO + BigInt((match[3] || "").padEnd(9, "0"));
    return match[1] ? -nano : nano;
  }

  // n / step rounded half-even (step > 0)
  function roundHalfEven(n, step) {
    const neg = n < 0n;
    const a = neg ? -n : n;
    let q = a / step;
    const r = a % step;
    if (r * 2n > step || (r * 2n === step && q % 2n === 1n)) q += 1n;
    return neg ? -q : q;
  }

  function group(digits) {
    return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  // amount: a decimal string (or number) in major units; options: exact (unit prices), plain
  function formatMoney(amount, currency, options) {
    const opts = options || {};
    const nano = toNano(amount);
    const code = String(currency || "USD").toUpperCase();
    if (nano === null) return `${amount} ${code}`;
    const m = minorUnits(code);
    const step = 10n ** BigInt(9 - m);
    const minor = roundHalfEven(nano, step);
    let neg, whole, frac;
    if (opts.exact || (nano !== 0n && minor === 0n)) {
      neg = nano < 0n;
      const a = neg ? -nano : nano;
      const trimmed = (a % NANO).toString().padStart(9, "0").replace(/0+$/, "");
      whole = (a / NANO).toString();
      frac = trimmed.padEnd(m, "0");
    } else {
      neg = minor < 0n;
      const a = neg ? -minor : minor;
      const scale = 10n ** BigInt(m);
      whole = (a / scale).toString();
      frac = m ? (a % scale).toString().padStart(m, "0") : "";
    }
    const number = (opts.plain ? whole : group(whole)) + (frac ? `.${frac}` : "");
    const sign = neg ? "-" : "";
    if (opts.plain) return sign + number;
    const symbol = SYMBOL[code];
    return symbol ? `${sign}${symbol}${number}` : `${sign}${code} ${number}`;
  }

  root.gatekeeperMoney = { formatMoney, minorUnits, toNano };
})(typeof window !== "undefined" ? window : globalThis);
