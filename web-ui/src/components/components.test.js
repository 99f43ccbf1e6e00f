import { describe, it, expect } from 'vitest'
import { mount } from '@vue/test-utils'
import FormField from './FormField.vue'
import PagerNav from './PagerNav.vue'
import ListState from './ListState.vue'
import ConfirmButton from './ConfirmButton.vue'
import ToggleSwitch from './ToggleSwitch.vue'

describe('FormField', () => {
  it('links its label to the control and shows the field error beside it', () => {
    const w = mount(FormField, { props: { label: 'Email', name: 'email', modelValue: 'x', error: 'Invalid format' } })
    const input = w.find('input')
    expect(w.find('label').attributes('for')).toBe(input.attributes('id'))
    expect(input.attributes('aria-invalid')).toBe('true')
    const err = w.find('[data-field-error]')
    expect(err.text()).toBe('Invalid format')
    expect(input.attributes('aria-describedby')).toContain(err.attributes('id'))
  })
  it('emits numbers for number inputs and booleans for checkboxes', async () => {
    const n = mount(FormField, { props: { label: 'Port', type: 'number', modelValue: 1 } })
    await n.find('input').setValue('587')
    expect(n.emitted('update:modelValue').at(-1)).toEqual([587])
    const c = mount(FormField, { props: { label: 'On', type: 'checkbox', modelValue: false } })
    await c.find('input').setValue(true)
    expect(c.emitted('update:modelValue').at(-1)).toEqual([true])
  })
  it('renders select options from strings and objects', () => {
    const w = mount(FormField, { props: { label: 'Role', type: 'select', modelValue: 'user', options: ['admin', { value: 'user', label: 'User' }] } })
    expect(w.findAll('option').map((o) => o.text())).toEqual(['admin', 'User'])
  })
})

describe('PagerNav', () => {
  it('pages forward and back and disables the ends', async () => {
    const w = mount(PagerNav, { props: { page: 1, total: 45, perPage: 20 } })
    expect(w.text()).toContain('Page 1 of 3')
    const [prev, next] = w.findAll('button')
    expect(prev.attributes('disabled')).toBeDefined()
    await next.trigger('click')
    expect(w.emitted('update:page')[0]).toEqual([2])
  })
  it('is just a count when everything fits on one page', () => {
    const w = mount(PagerNav, { props: { page: 1, total: 3, perPage: 20 } })
    expect(w.find('button').exists()).toBe(false)
    expect(w.text()).toContain('3 items')
  })
})

describe('ListState', () => {
  it('shows loading, then error, then empty, then the content', async () => {
    const w = mount(ListState, { props: { loading: true, count: 0, empty: 'No calls.' }, slots: { default: '<p id="content">rows</p>' } })
    expect(w.text()).toContain('Loading')
    await w.setProps({ loading: false, error: 'boom' })
    expect(w.find('[role=alert]').text()).toBe('boom')
    await w.setProps({ error: '' })
    expect(w.find('[data-empty]').text()).toBe('No calls.')
    await w.setProps({ count: 2 })
    expect(w.find('#content').exists()).toBe(true)
  })
})

describe('ConfirmButton', () => {
  it('asks once more before emitting confirm', async () => {
    const w = mount(ConfirmButton, { props: { label: 'Delete' } })
    await w.find('button').trigger('click')
    expect(w.emitted('confirm')).toBeUndefined()
    await w.findAll('button')[0].trigger('click')
    expect(w.emitted('confirm')).toHaveLength(1)
  })
})

describe('ToggleSwitch', () => {
  it('is a labelled switch that reports its state', async () => {
    const w = mount(ToggleSwitch, { props: { modelValue: false, label: 'Do not disturb' } })
    const b = w.find('[role=switch]')
    expect(b.attributes('aria-checked')).toBe('false')
    expect(b.text()).toContain('Do not disturb: off')
    await b.trigger('click')
    expect(w.emitted('update:modelValue')[0]).toEqual([true])
  })
})

describe('useForm', () => {
  it('maps API field errors, and ignores a second submit while one runs', async () => {
    const { useForm } = await import('../composables/useForm.js')
    const { ApiError } = await import('../api.js')
    const f = useForm({ name: '' })
    let runs = 0
    let release
    const first = f.submit(() => { runs++; return new Promise((r) => { release = r }) })
    f.submit(() => { runs++ })
    expect(runs).toBe(1)
    release('ok')
    expect(await first).toBe('ok')
    await f.submit(() => { throw new ApiError(422, { error: { code: 'VALIDATION_ERROR', message: 'Some fields are invalid', details: [{ field: 'name', message: 'is required' }] } }) }).catch(() => {})
    expect(f.errors.value).toEqual({ name: 'is required' })
    expect(f.error.value).toBe('Some fields are invalid')
    expect(f.busy.value).toBe(false)
  })
})
