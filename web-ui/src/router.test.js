import { describe, it, expect } from 'vitest'
import { guard, navLinks, routes } from './router.js'

const r = (name) => { const x = routes.find((y) => y.name === name); return { name, meta: x.meta, fullPath: x.path } }

describe('router', () => {
  it('sends everyone to the wizard until setup is done', () => {
    expect(guard(r('dashboard'), { setupNeeded: true, user: null })).toEqual({ name: 'setup' })
    expect(guard(r('login'), { setupNeeded: true, user: null })).toEqual({ name: 'setup' })
    expect(guard(r('setup'), { setupNeeded: true, user: null })).toBe(true)
    expect(guard(r('setup'), { setupNeeded: false, user: null })).toEqual({ name: 'login' })
  })
  it('asks for a login, and keeps users out of admin screens', () => {
    expect(guard(r('calls'), { user: null })).toEqual({ name: 'login', query: { next: '/calls' } })
    expect(guard(r('devices'), { user: { role: 'user' } })).toEqual({ name: 'dashboard' })
    expect(guard(r('devices'), { user: { role: 'admin' } })).toBe(true)
    expect(guard(r('calls'), { user: { role: 'user' } })).toBe(true)
  })
  it('shows admin links only to admins', () => {
    const user = navLinks('user').map((l) => l.label)
    const admin = navLinks('admin').map((l) => l.label)
    expect(user).toEqual(['Dashboard', 'Calls', 'Voicemail', 'Messages', 'Settings'])
    expect(admin).toEqual(expect.arrayContaining([...user, 'Devices', 'Numbers', 'Routing', 'Users', 'System', 'Security']))
  })
})
