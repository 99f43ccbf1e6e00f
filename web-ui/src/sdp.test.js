import { describe, expect, it } from 'vitest'
import { onlyOpus } from './sdp.js'

const OFFER = [
  'v=0', 'o=- 1 2 IN IP4 127.0.0.1', 's=-', 't=0 0',
  'm=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126', 'c=IN IP4 0.0.0.0',
  'a=rtpmap:111 opus/48000/2', 'a=rtcp-fb:111 transport-cc', 'a=fmtp:111 minptime=10;useinbandfec=1',
  'a=rtpmap:63 red/48000/2', 'a=fmtp:63 111/111', 'a=rtpmap:9 G722/8000', 'a=rtpmap:0 PCMU/8000',
  'a=rtpmap:8 PCMA/8000', 'a=rtpmap:13 CN/8000', 'a=rtpmap:110 telephone-event/48000',
  'a=rtpmap:126 telephone-event/8000', 'a=sendrecv', 'm=video 9 UDP/TLS/RTP/SAVPF 96', 'a=rtpmap:96 VP8/90000', '',
].join('\r\n')

describe('onlyOpus', () => {
  it('keeps Opus and its telephone-event, and every other line', () => {
    const s = onlyOpus(OFFER)
    expect(s).toContain('m=audio 9 UDP/TLS/RTP/SAVPF 111 110\r\n')
    expect(s).toContain('a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n')
    expect(s).toContain('a=rtpmap:110 telephone-event/48000')
    for (const gone of ['PCMU', 'PCMA', 'G722', 'red/', 'CN/', 'telephone-event/8000', 'a=fmtp:63']) expect(s).not.toContain(gone)
    expect(s).toContain('a=sendrecv\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000')
  })
  it('leaves an SDP without Opus as it is', () => {
    const g711 = 'v=0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n'
    expect(onlyOpus(g711)).toBe(g711)
  })
})
