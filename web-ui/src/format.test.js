import { describe, it, expect, afterEach } from 'vitest'
import { fmtNumber, setHomeCode } from './format.js'

afterEach(() => setHomeCode('1'))

describe('fmtNumber', () => {
  it('shows home numbers the national way and others internationally', () => {
    setHomeCode('1')
    expect(fmtNumber('+15558675309')).toBe('(555) 867-5309')
    expect(fmtNumber('+442079460958')).toBe('+44 20 7946 0958')
    setHomeCode('44')
    expect(fmtNumber('+442079460958')).toBe('020 7946 0958')
    expect(fmtNumber('+15558675309')).toBe('+1 555 867 5309')
  })
  it('leaves extensions, names and empty values alone', () => {
    for (const n of ['101', 'anonymous', 'sip:alice@pbx', '', '+15550001']) expect(fmtNumber(n)).toBe(n)
    expect(fmtNumber(null)).toBe('')
    expect(fmtNumber(undefined)).toBe('')
  })
})
