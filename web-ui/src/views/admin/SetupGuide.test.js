import { describe, it, expect } from 'vitest'
import { mount } from '@vue/test-utils'
import SetupGuide from './SetupGuide.vue'

const props = { deviceType: 'grandstream', name: 'Desk', username: 'dev123', password: 'Secret-pass-42', server: '192.168.1.10', port: 5060 }

describe('SetupGuide', () => {
  it('starts with the guide for the device type and puts the real values where that phone wants them', async () => {
    const w = mount(SetupGuide, { props })
    const text = () => w.find('ol').text()
    expect(text()).toContain('Authenticate Password:Secret-pass-42')
    expect(text()).toContain('SIP Server:192.168.1.10')
    await w.find('select').setValue('yealink')
    expect(text()).toContain('Register Name:dev123')
    expect(text()).toContain('Server Host:192.168.1.10')
    expect(w.findAll('button').map((b) => b.attributes('aria-label'))).toContain('Copy Password')
  })
  it('tells a phone set to TLS its port, the transport, the fingerprint and the SRTP mode its policy needs', async () => {
    const w = mount(SetupGuide, { props: { ...props, port: 5061, transport: 'tls', srtp: 'required', tlsSha256: 'AB:CD:EF' } })
    const text = () => w.find('ol').text()
    expect(text()).toContain('SIP Server:192.168.1.10:5061')
    expect(text()).toContain('set the SIP transport to TLS (encrypted signalling, on port 5061)')
    expect(text()).toContain('SHA-256:AB:CD:EF')
    expect(text()).toContain('set SRTP (media encryption) to mandatory ("SRTP Mode: Enabled and Forced")')
    await w.find('select').setValue('yealink')
    expect(text()).toContain('Server Host:192.168.1.10')
    expect(text()).toContain('Port:5061')
    expect(text()).toContain('Transport:TLS')
    expect(text()).toContain('RTP Encryption (SRTP): Compulsory')
    await w.find('select').setValue('softphone')
    expect(text()).toContain('Domain (server):192.168.1.10:5061')
    expect(text()).toContain('Transport:TLS')
    await w.setProps({ srtp: 'optional' })
    expect(text()).toContain('SRTP (media encryption) to optional')
  })
  it('tells a phone on UDP to leave SRTP off, since its keys are only sent over TLS', () => {
    const w = mount(SetupGuide, { props })
    expect(w.find('ol').text()).toContain('SRTP (media encryption) to off ("SRTP Mode: Disabled"): without TLS')
    expect(w.find('ol').text()).not.toContain('SIP transport')
  })
  it('names a port other than 5060 with the server, and softphones start with the QR', async () => {
    const w = mount(SetupGuide, { props: { ...props, deviceType: 'softphone', port: 5070 } })
    expect(w.find('ol').text()).toContain('Scan the QR code')
    expect(w.find('ol').text()).toContain('Domain (server):192.168.1.10:5070')
  })
})
