//! Which handler answers a tool call: the meta tools (discovery in [`meta`], search and
//! routing in [`search`], tasks in [`task_tools`]), or, for any other name, the mounted agent of that tool name.

use rmcp::model::{CallToolResult, JsonObject};

use super::call::CallContext;
use super::meta;
use super::search;
use super::shapes::{
    CALL_AGENT, DISCOVER_AGENTS, GET_AGENT_DETAILS, GET_AGENTS_INFO, GET_SERVER_INFO,
    LIST_AGENT_ROSTER, LIST_AGENTS, RESOLVE_AGENT, ROUTE_TASK, SEARCH_AGENTS,
};
use super::state::Gateway;
use super::task_shapes::{
    CANCEL_TASK, CLEAR_AGENT_QUEUE, CLEAR_ALL_QUEUES, GET_QUEUE_STATS, GET_TASK_STATUS,
    PAUSE_AGENT_QUEUE, PAUSE_ALL_QUEUES, RESUME_AGENT_QUEUE, RESUME_ALL_QUEUES, SUBMIT_TASK,
};
use super::task_tools;

/// Runs meta tool `tool`, or `None` when `tool` is not a meta tool.
pub async fn meta_tool(
    gateway: &Gateway,
    tool: &str,
    args: &JsonObject,
    context: &CallContext,
) -> Option<CallToolResult> {
    Some(match tool {
        DISCOVER_AGENTS => meta::discover_agents(gateway, args, context).await,
        GET_AGENT_DETAILS => meta::get_agent_details(gateway, args, context),
        GET_AGENTS_INFO => meta::get_agents_info(gateway, args, context),
        LIST_AGENTS => meta::list_agents(gateway, args, context).await,
        LIST_AGENT_ROSTER => meta::list_agent_roster(gateway, args, context).await,
        SEARCH_AGENTS => search::search_agents(gateway, args, context).await,
        ROUTE_TASK => search::route_task(gateway, args, context).await,
        GET_SERVER_INFO => meta::get_server_info(gateway, context).await,
        RESOLVE_AGENT => meta::resolve_agent(gateway, args, context).await,
        CALL_AGENT => meta::call_agent(gateway, args, context).await,
        SUBMIT_TASK => task_tools::submit_task(gateway, args, context).await,
        GET_QUEUE_STATS => task_tools::get_queue_stats(gateway, args, context),
        PAUSE_AGENT_QUEUE => task_tools::set_agent_paused(gateway, args, true, context).await,
        RESUME_AGENT_QUEUE => task_tools::set_agent_paused(gateway, args, false, context).await,
        CLEAR_AGENT_QUEUE => task_tools::clear_agent_queue(gateway, args, context).await,
        GET_TASK_STATUS => task_tools::get_task_status(gateway, args, context),
        CANCEL_TASK => task_tools::cancel_task(gateway, args, context).await,
        PAUSE_ALL_QUEUES => task_tools::set_all_paused(gateway, true, context).await,
        RESUME_ALL_QUEUES => task_tools::set_all_paused(gateway, false, context).await,
        CLEAR_ALL_QUEUES => task_tools::clear_all_queues(gateway, context).await,
        _ => return None,
    })
}
