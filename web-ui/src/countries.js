// Countries a home office is likely in, with their calling codes: national
// numbers typed anywhere in GoSIP are read in the chosen country's code
// (setting system.default_country holds the code).
export const COUNTRIES = [
  ['AR', 'Argentina', '54'], ['AU', 'Australia', '61'], ['AT', 'Austria', '43'], ['BE', 'Belgium', '32'],
  ['BR', 'Brazil', '55'], ['CA', 'Canada', '1'], ['CL', 'Chile', '56'], ['CN', 'China', '86'],
  ['CO', 'Colombia', '57'], ['CZ', 'Czechia', '420'], ['DK', 'Denmark', '45'], ['FI', 'Finland', '358'],
  ['FR', 'France', '33'], ['DE', 'Germany', '49'], ['GR', 'Greece', '30'], ['HK', 'Hong Kong', '852'],
  ['HU', 'Hungary', '36'], ['IN', 'India', '91'], ['IE', 'Ireland', '353'], ['IL', 'Israel', '972'],
  ['IT', 'Italy', '39'], ['JP', 'Japan', '81'], ['LU', 'Luxembourg', '352'], ['MX', 'Mexico', '52'],
  ['NL', 'Netherlands', '31'], ['NZ', 'New Zealand', '64'], ['NO', 'Norway', '47'], ['PH', 'Philippines', '63'],
  ['PL', 'Poland', '48'], ['PT', 'Portugal', '351'], ['PR', 'Puerto Rico', '1'], ['RO', 'Romania', '40'],
  ['SG', 'Singapore', '65'], ['ZA', 'South Africa', '27'], ['KR', 'South Korea', '82'], ['ES', 'Spain', '34'],
  ['SE', 'Sweden', '46'], ['CH', 'Switzerland', '41'], ['TW', 'Taiwan', '886'], ['TR', 'Türkiye', '90'],
  ['AE', 'United Arab Emirates', '971'], ['GB', 'United Kingdom', '44'], ['US', 'United States', '1'],
].map(([iso, name, dial]) => ({ iso, name, dial }))

// The browser's country (from its language, e.g. en-GB -> GB), if listed.
export function browserCountry(lang = globalThis.navigator?.language) {
  try {
    const region = new Intl.Locale(lang || 'en-US').maximize().region
    return COUNTRIES.find((c) => c.iso === region)?.iso ?? 'US'
  } catch { return 'US' }
}

// The browser's IANA time zone, and every zone it knows.
export function browserTimeZone() {
  try { return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC' } catch { return 'UTC' }
}
// (V8's list leaves out UTC itself, which GoSIP accepts and defaults to.)
export function timeZones() {
  let zones = []
  try { zones = Intl.supportedValuesOf('timeZone') } catch { /* an old browser: UTC only */ }
  return zones.includes('UTC') ? zones : ['UTC', ...zones]
}
