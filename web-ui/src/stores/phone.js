// The phone in the browser: a SIP user agent (JsSIP) over the WebSocket
// webd relays to sipd (`/ws/sip`, subprotocol "sip"). The browser holds no
// SIP password: webd vouches for the logged-in user's Browser device,
// which POST /api/phone makes on first use. Media is WebRTC to mediad
// (ICE-lite, DTLS-SRTP), in G.711 or, when chosen under Audio, Opus (which
// mediad transcodes to G.711).
//
// The phone is off until the user turns it on on the Phone screen; the
// choice is remembered in this browser, and once on it stays registered
// while any GoSIP page is open, so calls ring here (the toast in App.vue).
import { defineStore } from 'pinia'
import { call } from '../client.js'
import { onlyOpus } from '../sdp.js'

const ENABLED_KEY = 'gosip.phone.enabled'
const INPUT_KEY = 'gosip.phone.input'
const OUTPUT_KEY = 'gosip.phone.output'
const CODEC_KEY = 'gosip.phone.codec'
/** The codec choices of the Audio panel. */
export const CODECS = [
  { value: 'g711', label: 'G.711 (default: no transcoding)' },
  { value: 'opus', label: 'Opus (copes better with a poor connection)' },
]

/** What a microphone failure means to the user. */
export function micMessage(err) {
  const name = err?.name || ''
  if (name === 'NotAllowedError' || name === 'SecurityError' || /denied|permission/i.test(err?.message || '')) {
    return 'The microphone is blocked. Allow it for this site in the browser (the icon left of the address), then try again.'
  }
  if (name === 'NotFoundError' || name === 'OverconstrainedError') {
    return 'No microphone was found. Plug one in or choose another input below.'
  }
  if (name === 'NotReadableError') return 'The microphone is in use by another program.'
  return `The microphone could not be opened: ${err?.message || name || 'unknown error'}`
}

/** Why a call ended, in words (JsSIP's cause). */
export function endMessage(cause) {
  const words = {
    Busy: 'Busy', Rejected: 'Declined', 'Not Found': 'No such number', Unavailable: 'Not available',
    'Request Timeout': 'No answer', 'No Answer': 'No answer', Canceled: 'Cancelled',
    'Connection Error': 'The connection to GoSIP was lost', 'User Denied Media Access': 'The microphone is blocked',
    'WebRTC Error': 'The audio could not be set up', 'Incompatible SDP': 'The audio could not be set up',
  }
  return words[cause] || cause || ''
}

let ua = null
let session = null
let jssip = null

async function loadJsSip() {
  if (!jssip) jssip = (await import('jssip')).default
  return jssip
}

export const usePhone = defineStore('phone', {
  state: () => ({
    enabled: typeof localStorage !== 'undefined' && localStorage.getItem(ENABLED_KEY) === '1',
    /** off | connecting | registered | disconnected | failed */
    status: 'off',
    error: '',
    extension: '',
    iceServers: [],
    /** null or { direction: 'in'|'out', peer, state: 'ringing'|'incoming'|'active'|'ended', started, muted, held, ended } */
    call: null,
    lastEnd: '',
    inputs: [],
    outputs: [],
    input: (typeof localStorage !== 'undefined' && localStorage.getItem(INPUT_KEY)) || '',
    output: (typeof localStorage !== 'undefined' && localStorage.getItem(OUTPUT_KEY)) || '',
    codec: (typeof localStorage !== 'undefined' && localStorage.getItem(CODEC_KEY)) || 'g711',
  }),
  actions: {
    /** Turns the phone on (and remembers it) or off. */
    async setEnabled(on) {
      this.enabled = on
      localStorage.setItem(ENABLED_KEY, on ? '1' : '0')
      if (on) await this.start()
      else this.stop()
    },
    /** Connects and registers, if enabled and not yet running. */
    async start() {
      if (!this.enabled || ua) return
      this.status = 'connecting'
      this.error = ''
      let me
      try {
        me = await call('phone')
      } catch (e) {
        this.status = 'failed'
        this.error = `The browser phone could not be set up: ${e.message}`
        return
      }
      this.extension = me.extension || me.username
      this.iceServers = me.ice_servers || []
      const JsSIP = await loadJsSip()
      const scheme = location.protocol === 'https:' ? 'wss' : 'ws'
      const socket = new JsSIP.WebSocketInterface(`${scheme}://${location.host}${me.ws_path}`)
      ua = new JsSIP.UA({
        sockets: [socket],
        uri: `sip:${me.username}@${me.domain}`,
        register: true,
        register_expires: 300,
        session_timers: false,
        user_agent: 'GoSIP browser phone',
        connection_recovery_min_interval: 2,
        connection_recovery_max_interval: 30,
      })
      ua.on('connected', () => { if (this.status !== 'registered') this.status = 'connecting' })
      ua.on('registered', () => { this.status = 'registered'; this.error = '' })
      ua.on('disconnected', () => {
        if (!ua) return
        this.status = 'disconnected'
        this.error = 'The connection to GoSIP was lost; reconnecting…'
      })
      ua.on('registrationFailed', (e) => {
        this.status = 'failed'
        this.error = `GoSIP refused the browser phone: ${e.cause || 'unknown reason'}`
      })
      ua.on('newRTCSession', ({ session: s, originator }) => this.track(s, originator === 'remote'))
      ua.start()
      this.listDevices()
    },
    stop() {
      if (session) session.terminate()
      if (ua) { const u = ua; ua = null; u.stop() }
      this.status = 'off'
      this.call = null
    },
    async listDevices() {
      if (!navigator.mediaDevices?.enumerateDevices) return
      const all = await navigator.mediaDevices.enumerateDevices()
      this.inputs = all.filter((d) => d.kind === 'audioinput').map((d, i) => ({ id: d.deviceId, label: d.label || `Microphone ${i + 1}` }))
      this.outputs = all.filter((d) => d.kind === 'audiooutput').map((d, i) => ({ id: d.deviceId, label: d.label || `Speaker ${i + 1}` }))
    },
    setInput(id) { this.input = id; localStorage.setItem(INPUT_KEY, id) },
    /** The codec of the next call: 'g711' or 'opus'. */
    setCodec(c) { this.codec = c === 'opus' ? 'opus' : 'g711'; localStorage.setItem(CODEC_KEY, this.codec) },
    async setOutput(id) {
      this.output = id
      localStorage.setItem(OUTPUT_KEY, id)
      const el = remoteAudio()
      if (el.setSinkId) await el.setSinkId(id).catch(() => {})
    },
    options() {
      return {
        mediaConstraints: { audio: this.input ? { deviceId: { exact: this.input } } : true, video: false },
        rtcOfferConstraints: { offerToReceiveAudio: true, offerToReceiveVideo: false },
        pcConfig: { iceServers: this.iceServers },
      }
    },
    /** Asks for the microphone first, so a refusal gets a clear message. */
    async checkMic() {
      try {
        const s = await navigator.mediaDevices.getUserMedia({ audio: this.options().mediaConstraints.audio })
        s.getTracks().forEach((t) => t.stop())
        this.listDevices()
        return true
      } catch (e) {
        this.lastEnd = micMessage(e)
        return false
      }
    },
    async dial(number) {
      const n = String(number || '').replace(/[\s()-]/g, '')
      if (!n || !ua || session) return
      this.lastEnd = ''
      if (!(await this.checkMic())) return
      const domain = ua.configuration.uri.host
      ua.call(`sip:${n}@${domain}`, this.options())
    },
    async answer() {
      if (!session || this.call?.state !== 'incoming') return
      if (!(await this.checkMic())) { session.terminate({ status_code: 480 }); return }
      session.answer(this.options())
    },
    decline() { if (session) session.terminate({ status_code: 486, reason_phrase: 'Busy Here' }) },
    hangup() { if (session) session.terminate() },
    toggleMute() {
      if (!session || !this.call) return
      if (this.call.muted) session.unmute({ audio: true })
      else session.mute({ audio: true })
      this.call.muted = !this.call.muted
    },
    toggleHold() {
      if (!session || !this.call) return
      if (this.call.held) session.unhold()
      else session.hold()
      this.call.held = !this.call.held
    },
    /**
     * Blind transfer (REFER): the other party is put through to `number`
     * and this browser leaves the call once GoSIP takes the transfer.
     */
    transfer(number) {
      const n = String(number || '').replace(/[\s()-]/g, '')
      if (!session || this.call?.state !== 'active' || !n) return
      const domain = ua.configuration.uri.host
      this.call.transferring = n
      session.refer(`sip:${n}@${domain}`, {
        eventHandlers: {
          failed: () => { if (this.call) { this.call.transferring = ''; this.lastEnd = `Could not transfer to ${n}` } },
        },
      })
    },
    dtmf(digit) {
      if (session && this.call?.state === 'active') session.sendDTMF(digit, { transportType: 'RFC2833' })
    },
    /** Shows the codec this browser sends in (from WebRTC's statistics, once audio flows). */
    async readCodec(s, tries = 10) {
      const pc = s.connection
      if (!pc || session !== s || !this.call) return
      const stats = await pc.getStats().catch(() => null)
      let codec = ''
      stats?.forEach((r) => {
        if (r.type === 'outbound-rtp' && r.kind === 'audio' && r.codecId) codec = stats.get(r.codecId)?.mimeType?.replace(/^audio\//i, '') || ''
      })
      if (codec && this.call && session === s) this.call.codec = codec.toLowerCase() === 'opus' ? 'Opus' : codec.toUpperCase()
      else if (tries > 1) setTimeout(() => this.readCodec(s, tries - 1), 500)
    },
    /** Follows one call from its first event to its end. */
    track(s, incoming) {
      if (session) { s.terminate({ status_code: 486 }); return }
      session = s
      const peer = s.remote_identity?.uri?.user || s.remote_identity?.display_name || ''
      this.call = { direction: incoming ? 'in' : 'out', peer, state: incoming ? 'incoming' : 'ringing', started: 0, muted: false, held: false, transferring: '', codec: '' }
      const attach = (pc) => {
        pc.addEventListener('track', (ev) => {
          const el = remoteAudio()
          el.srcObject = ev.streams[0] || new MediaStream([ev.track])
          if (this.output && el.setSinkId) el.setSinkId(this.output).catch(() => {})
          el.play().catch(() => {})
        })
      }
      if (s.connection) attach(s.connection)
      s.on('peerconnection', ({ peerconnection }) => attach(peerconnection))
      // Opus chosen: what this browser offers, and the offers it answers,
      // name Opus alone, so Opus is what it speaks.
      const opus = this.codec === 'opus'
      s.on('sdp', (e) => { if (opus && e.type === 'offer') e.sdp = onlyOpus(e.sdp) })
      s.on('accepted', () => {
        if (!this.call) return
        this.call.state = 'active'
        this.call.started = Date.now()
        this.readCodec(s)
      })
      const end = (e) => {
        if (session !== s) return
        session = null
        this.lastEnd = e?.originator === 'local' && e?.cause === 'Terminated' ? 'Call ended' : endMessage(e?.cause) || 'Call ended'
        this.call = null
        remoteAudio().srcObject = null
      }
      s.on('ended', end)
      s.on('failed', end)
    },
  },
})

/** The one element the far end is heard through. */
function remoteAudio() {
  let el = document.getElementById('gosip-phone-audio')
  if (!el) {
    el = document.createElement('audio')
    el.id = 'gosip-phone-audio'
    el.autoplay = true
    document.body.appendChild(el)
  }
  return el
}
