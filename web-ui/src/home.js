// The system's country calling code (from the login and /api/auth/me): its
// numbers are shown the way people there write them, others in international
// form. Kept apart from format.js so the login page does not load the phone
// number metadata.
let code = '1'
export function setHomeCode(c) { if (c) code = String(c) }
export function homeCode() { return code }
