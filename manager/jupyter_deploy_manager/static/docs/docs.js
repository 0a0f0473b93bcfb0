// The interactive API pages (service docs and the manager's own): asks for a token, then renders
// the OpenAPI document with Swagger UI. A file of its own, not inline, so that the page's
// Content-Security-Policy can allow scripts from the manager only. The page says what to load in
// the data attributes of #jd-docs.
(function () {
  "use strict";
  const config = document.getElementById("jd-docs").dataset;
  const specUrl = config.specUrl;
  const needsToken = config.needsToken === "1";
  const storeKey = "jupyter-deploy-token:" + specUrl;

  function render(spec, token) {
    // Remembered here, not in load(), so the public page keeps a #token= across reloads too.
    if (token) { sessionStorage.setItem(storeKey, token); }
    const options = {
      dom_id: "#swagger-ui", deepLinking: true, tryItOutEnabled: true, displayRequestDuration: true,
      // No badge fetched from validator.swagger.io: the page talks to this manager only.
      validatorUrl: null,
    };
    if (spec) { options.spec = spec; } else { options.url = specUrl; }
    if (token) {
      options.onComplete = function () { window.ui.preauthorizeApiKey("bearerAuth", token); };
    }
    window.ui = SwaggerUIBundle(options);
  }

  function load(token) {
    const error = document.getElementById("jd-error");
    error.textContent = "";
    fetch(specUrl, {headers: {Authorization: "Bearer " + token}})
      .then(function (resp) {
        return resp.json().then(function (body) {
          if (!resp.ok) { throw new Error(body.message || resp.statusText); }
          return body;
        });
      })
      .then(function (spec) {
        document.getElementById("jd-auth").hidden = true;
        render(spec, token);
      })
      .catch(function (e) { error.textContent = "Could not load the API description: " + e.message; });
  }

  document.getElementById("jd-auth-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    load(document.getElementById("jd-token").value.trim());
  });
  // A token in the fragment is never sent to the server nor logged.
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  const token = fromHash || sessionStorage.getItem(storeKey);
  if (fromHash) { history.replaceState(null, "", location.pathname + location.search); }
  if (!needsToken) { render(null, token); }
  else if (token) { load(token); }
})();
