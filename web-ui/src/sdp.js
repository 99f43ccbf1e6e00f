// The browser phone's codec choice (Phone > Audio): "Opus" keeps only Opus
// (and its 48 kHz telephone-event) in the audio section of an SDP, so the
// browser speaks Opus and GoSIP's mediad transcodes it to the G.711 the
// rest of the call uses. Opus copes better with a poor connection (in-band
// FEC, loss concealment); G.711, the default, needs no transcoding.

/** `sdp` with only Opus and telephone-event/48000 offered for audio; unchanged when it has no Opus. */
export function onlyOpus(sdp) {
  const lines = sdp.split(/\r?\n/)
  const keep = new Set()
  for (const l of lines) {
    const m = /^a=rtpmap:(\d+) (opus|telephone-event)\/48000/i.exec(l)
    if (m) keep.add(m[1])
  }
  if (![...keep].some((pt) => lines.some((l) => new RegExp(`^a=rtpmap:${pt} opus/`, 'i').test(l)))) return sdp
  let audio = false
  const out = []
  for (const l of lines) {
    if (l.startsWith('m=')) {
      audio = l.startsWith('m=audio ')
      if (audio) {
        const f = l.split(' ')
        out.push([...f.slice(0, 3), ...f.slice(3).filter((pt) => keep.has(pt))].join(' '))
        continue
      }
    }
    const pt = audio && /^a=(?:rtpmap|fmtp|rtcp-fb):(\d+)[ ]/.exec(l)
    if (pt && !keep.has(pt[1])) continue
    out.push(l)
  }
  return out.join('\r\n')
}
