// /api/system/config answers {groups, settings, values}: values is key ->
// value (secrets masked), settings describe each key (group, label, help,
// kind, limits).
export function configValues(r) {
  return { ...(r?.values ?? {}) }
}

// The System screen's sections in the API's order, each with its settings.
export function settingGroups(r) {
  const settings = r?.settings ?? []
  return (r?.groups ?? [])
    .map((g) => ({ ...g, settings: settings.filter((s) => s.group === g.id) }))
    .filter((g) => g.settings.length)
}
