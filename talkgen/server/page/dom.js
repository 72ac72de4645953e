// Small helpers the page's modules share: elements, and numbers as the page shows them.

export function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

export function button(label, onClick) {
  const b = element("button", "", label);
  b.type = "button";
  b.addEventListener("click", onClick);
  return b;
}

export function seconds(value) {
  return value === null || value === undefined ? "–" : `${value.toFixed(1)} s`;
}

export function dollars(value) {
  if (value === null || value === undefined) return "–";
  return value < 0.01 ? `$${value.toPrecision(2)}` : `$${value.toFixed(2)}`;
}

export function when(created) {
  if (created === null || created === undefined) return "–";
  const date = new Date(typeof created === "number" ? created * 1000 : created);
  return Number.isNaN(date.getTime()) ? String(created) : date.toLocaleTimeString();
}
