// The typed API client. ENDPOINTS names every (method, path) the UI uses, in
// the OpenAPI path syntax; the e2e suite checks each against /api/openapi.json
// so a renamed route fails a test instead of a screen.
import { api, query } from './api.js'

/**
 * @typedef {{ items: T[], total: number, page: number, per_page: number }} Page
 * @template T
 */
/** @typedef {{ id: number, email: string, name: string, role: 'admin'|'user', dnd?: boolean }} User */
/**
 * @typedef {{ id: number, name: string, username: string, extension?: string, device_type: string,
 *   user_id?: number|null, recording_enabled: boolean, registered?: boolean,
 *   registrations?: {contact: string, user_agent: string, ip_address: string, expires_at: string}[] }} Device
 */
/** @typedef {{ id: number, number: string, name: string, twilio_sid?: string, sms_enabled: boolean, voice_enabled: boolean, owner_user_id?: number|null, sms_email_forward?: boolean }} Did */
/** @typedef {{ id: number, did_id: number|null, priority: number, name: string, condition_type: 'time'|'callerid'|'default', condition_data: object, action_type: 'ring'|'forward'|'voicemail'|'announcement'|'reject', action_data: object, enabled: boolean }} Route (shape: RouteBody in /api/openapi.json, views/admin/route-schema.json) */
/** @typedef {{ id: number, direction: string, from_number: string, to_number: string, started_at: string, duration: number, disposition: string, recording_url?: string|null }} Cdr */
/** @typedef {{ id: number, from_number: string, transcript?: string|null, duration: number, is_read: boolean, created_at: string }} Voicemail */
/** @typedef {{ id: number, direction: string, from_number: string, to_number: string, body: string, media_urls: any[], status: string, is_read: boolean, created_at: string }} Message */
/** @typedef {{ custom: boolean, seconds: number, sample_rate: number, channels: number }} HoldMusic (custom false: GoSIP's own melody, the numbers 0) */

export const ENDPOINTS = {
  me: ['GET', '/auth/me'],
  login: ['POST', '/auth/login'],
  logout: ['POST', '/auth/logout'],
  password: ['POST', '/auth/password'],
  setupStatus: ['GET', '/setup'],
  setupTwilioCheck: ['POST', '/setup/twilio-check'],
  setupNetwork: ['POST', '/setup/network'],
  setup: ['POST', '/setup'],
  dashboard: ['GET', '/dashboard'],
  dndGet: ['GET', '/dnd'],
  dnd: ['PUT', '/dnd'],
  activeCalls: ['GET', '/calls'],
  callRecording: ['PUT', '/calls/{call_id}/recording'],
  devices: ['GET', '/devices'],
  deviceCreate: ['POST', '/devices'],
  device: ['GET', '/devices/{id}'],
  deviceUpdate: ['PUT', '/devices/{id}'],
  deviceDelete: ['DELETE', '/devices/{id}'],
  deviceQr: ['GET', '/devices/{id}/qr'],
  deviceProvisioning: ['GET', '/devices/{id}/provisioning'],
  deviceProvisioningSet: ['PUT', '/devices/{id}/provisioning'],
  deviceProvisioningStop: ['DELETE', '/devices/{id}/provisioning'],
  dids: ['GET', '/dids'],
  didCreate: ['POST', '/dids'],
  didUpdate: ['PUT', '/dids/{id}'],
  didDelete: ['DELETE', '/dids/{id}'],
  didConfigure: ['POST', '/dids/{id}/configure'],
  twilioNumbers: ['GET', '/twilio/numbers'],
  routes: ['GET', '/routes'],
  routeCreate: ['POST', '/routes'],
  routeUpdate: ['PUT', '/routes/{id}'],
  routeDelete: ['DELETE', '/routes/{id}'],
  routesReorder: ['PUT', '/routes/reorder'],
  routesTest: ['POST', '/routes/test'],
  promptUpload: ['POST', '/prompts'],
  callerLists: ['GET', '/caller-lists'],
  callerListAdd: ['POST', '/caller-lists'],
  callerListDelete: ['DELETE', '/caller-lists/{id}'],
  blocklist: ['GET', '/blocklist'],
  blockAdd: ['POST', '/blocklist'],
  blockDelete: ['DELETE', '/blocklist/{id}'],
  autoReplies: ['GET', '/auto-replies'],
  autoReplyCreate: ['POST', '/auto-replies'],
  autoReplyUpdate: ['PUT', '/auto-replies/{id}'],
  autoReplyDelete: ['DELETE', '/auto-replies/{id}'],
  cdrs: ['GET', '/cdrs'],
  cdrsCsv: ['GET', '/cdrs/export'],
  cdrRecording: ['GET', '/cdrs/{id}/recording'],
  voicemails: ['GET', '/voicemails'],
  voicemailRead: ['PUT', '/voicemails/{id}/read'],
  voicemailDelete: ['DELETE', '/voicemails/{id}'],
  voicemailAudio: ['GET', '/voicemails/{id}/audio'],
  messages: ['GET', '/messages'],
  conversations: ['GET', '/messages/conversations'],
  conversationRead: ['PUT', '/messages/conversations/read'],
  messageSend: ['POST', '/messages'],
  messageRead: ['PUT', '/messages/{id}/read'],
  users: ['GET', '/users'],
  userCreate: ['POST', '/users'],
  userUpdate: ['PUT', '/users/{id}'],
  userDelete: ['DELETE', '/users/{id}'],
  userPassword: ['POST', '/users/{id}/password'],
  userUnlock: ['POST', '/users/{id}/unlock'],
  settings: ['GET', '/settings'],
  settingsUpdate: ['PUT', '/settings'],
  settingsNotifyTest: ['POST', '/settings/notify-test'],
  apiKeys: ['GET', '/api-keys'],
  apiKeyCreate: ['POST', '/api-keys'],
  apiKeyDelete: ['DELETE', '/api-keys/{id}'],
  config: ['GET', '/system/config'],
  configUpdate: ['PUT', '/system/config'],
  backup: ['POST', '/system/backup'],
  restore: ['POST', '/system/restore'],
  restoreCheck: ['POST', '/system/restore/check'],
  backups: ['GET', '/system/backups'],
  backupDownload: ['GET', '/system/backups/{name}'],
  backupCheck: ['GET', '/system/backups/{name}/check'],
  backupRestore: ['POST', '/system/backups/{name}/restore'],
  notifyTest: ['POST', '/system/notify-test'],
  holdMusic: ['GET', '/system/hold-music'],
  sipTls: ['GET', '/system/sip-tls'],
  holdMusicUpload: ['PUT', '/system/hold-music'],
  holdMusicReset: ['DELETE', '/system/hold-music'],
  alerts: ['GET', '/alerts'],
  alertAck: ['PUT', '/alerts/{id}/ack'],
  health: ['GET', '/system/health'],
  checklist: ['GET', '/system/checklist'],
  twilioSetup: ['POST', '/system/twilio/setup'],
  securityLog: ['GET', '/security-events'],
  webhooks: ['GET', '/webhook-endpoints'],
  webhookCreate: ['POST', '/webhook-endpoints'],
  webhookDelete: ['DELETE', '/webhook-endpoints/{id}'],
  webhookUpdate: ['PUT', '/webhook-endpoints/{id}'],
  events: ['GET', '/events'],
  phone: ['POST', '/phone'],
}

/** Fills `{id}` placeholders: url('device', {id: 3}) -> '/devices/3'. */
export function url(name, params = {}, q) {
  const [, path] = ENDPOINTS[name]
  const filled = path.replace(/\{(\w+)\}/g, (_, k) => encodeURIComponent(params[k]))
  return filled + (q ? query(q) : '')
}

/** Calls endpoint `name`. */
export function call(name, { params, q, body, raw } = {}) {
  const [method] = ENDPOINTS[name]
  return api(url(name, params, q), { method, body, raw })
}

/** The address the browser should load for an endpoint (audio, images, downloads). */
export function href(name, params, q) {
  return `/api${url(name, params, q)}`
}
