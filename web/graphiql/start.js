// Starts GraphiQL against this server: queries and mutations over POST /graphql,
// subscriptions over the graphql-transport-ws WebSocket at /graphql/ws.
(function () {
  const wsUrl = new URL('/graphql/ws', window.location.href);
  wsUrl.protocol = wsUrl.protocol === 'https:' ? 'wss:' : 'ws:';
  const fetcher = GraphiQL.createFetcher({
    url: new URL('/graphql', window.location.href).toString(),
    subscriptionUrl: wsUrl.toString(),
  });
  const root = ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(React.createElement(GraphiQL, {
    fetcher,
    defaultEditorToolsVisibility: true,
    // Paste {"Authorization": "Bearer <token from login>"} into the Headers tab.
    shouldPersistHeaders: false,
  }));
})();
