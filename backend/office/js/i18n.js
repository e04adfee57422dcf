// The back office's words in Chinese and English (the cabinet's own shopper-facing strings, with
// Tibetan, are in cabinet/ui/static/strings.json; these are the operators').

const STRINGS = {
  en: {
    title: "Cabinet back office", nav_fleet: "Fleet", nav_sales: "Sales", logout: "Log out",
    language: "中文", username: "Username", password: "Password", log_in: "Log in",
    login_refused: "Wrong username or password.", network: "The backend cannot be reached.",
    never: "never", ago_s: "{0} s ago", ago_min: "{0} min ago", ago_h: "{0} h ago", ago_d: "{0} days ago",
    cabinets: "Cabinets", online: "online", offline: "offline", offline_since: "offline since {0}",
    cabinet: "Cabinet", status: "Status", temperature: "Temperature", setpoint: "Setpoint",
    alarms: "Alarms", lockout: "food-safety lockout", last_sale: "Last sale", lag: "Queue lag",
    version: "Version", last_seen: "Last contact", filter: "Filter", all: "All",
    only_offline: "Offline", only_alarms: "With alarms", today: "Today", revenue: "Revenue",
    units: "Units", sales_count: "Sales", none: "none", of_fleet: "{0} of {1} online",
    temperature_24h: "Temperature, last 24 h", temperature_7d: "Temperature, last 7 days",
    h24: "24 h", d7: "7 days", door_open: "door open", compressor_duty: "Compressor duty",
    actions: "Remote actions", commands: "Commands", command: "Command", issued: "issued",
    delivered: "delivered", done: "done", rejected: "rejected", failed: "failed", expired: "expired",
    unsupported: "unsupported", interrupted: "interrupted", by: "By", at: "At", detail: "Detail",
    set_setpoint: "Set temperature", restock_mode: "Restock mode", clear_alarm: "Clear alarm",
    clear_lockout: "Clear lockout (food checked)", end_session: "End stuck session",
    request_diagnostics: "Diagnostics", restart: "Restart", send: "Send",
    confirm_lockout: "Has someone checked the food in this cabinet? The lockout is cleared in their name.",
    confirm_restart: "Restart the cabinet's software now? (Refused during a session.)",
    recent_sessions: "Recent sales", period: "Period", last_7: "Last 7 days", last_30: "Last 30 days",
    this_month: "This month", compare: "Previous period", by_day: "Revenue by day",
    by_hour: "By hour of the day", heat: "Revenue by weekday and hour", top: "Top sellers",
    by_cabinet: "By cabinet", transactions: "Transactions", lines: "Lines", flags: "Flags",
    shelves: "Weighing", total: "Total", product: "Product", export_csv: "Export CSV",
    weekdays: "Mon,Tue,Wed,Thu,Fri,Sat,Sun", change: "{0} vs previous period",
    no_data: "No data yet.", sent: "Sent: {0}", forbidden: "Your role may not do this.",
    nav_review: "Review", nav_stock: "Stock", nothing_to_review: "Nothing to review.",
    recorded_lines: "Recorded", removed: "Taken without a sale", value: "Value",
    action_lines: "These lines were taken", action_void: "Void (nothing taken)",
    action_refund: "Refund (taken, money back)", action_accept: "Accept as recorded",
    add_line: "Add a line", note: "Note (what you checked)", resolve: "Resolve", price: "Price",
    route: "Cabinets on the route", days_ahead: "Days until the visit", print: "Print",
    choose_cabinets: "Choose the cabinets of the route.", pick_total: "To load, all cabinets",
    shelf: "Shelf", count: "In cabinet", par: "Par", per_day: "Sold a day", bring: "Bring",
    not_counted: "not counted", count_on_site: "count on site", save_par: "Save par levels",
    counted: "Counted",
    nav_alerts: "Alerts", rules: "Rules", fired_alerts: "Alerts that fired", new_rule: "New rule",
    minutes: "after (min)", quiet: "Quiet hours", add_rule: "Add rule", delete: "Delete",
    resolved: "resolved", secret_once: "The webhook's signing secret (shown only now):",
    alert_offline: "Offline", alert_temperature: "Temperature out of band", alert_lockout: "Food-safety lockout",
    alert_forced_open: "Door forced open", alert_unauthorised: "Unauthorised removal",
    alert_sold_out: "Sold out", alert_no_sales: "No sales", "alert_deleted rule": "Deleted rule",
    delivery_sent: "sent", delivery_pending: "waiting", delivery_failed: "failed",
    nav_planogram: "Planogram and prices", no_planogram: "The cabinet has not reported its planogram yet.",
    applied_at: "applied", reported_at: "reported", products: "Products", shelves_stock: "Shelves",
    add_product: "Add a product", send_planogram: "Send to the cabinet", field_sku: "SKU",
    field_name_zh: "Name (zh)", field_name_bo: "Name (bo)", field_name_en: "Name (en)",
    field_price_fen: "Price (fen)", field_unit_grams: "Unit g", field_tolerance_grams: "± g",
    field_perishable: "Perishable",
    nav_people: "People", accounts: "Accounts", audit: "Audit log", audit_filter: "person or cabinet",
    disabled: "disabled", enable: "Enable", disable: "Disable", set_password: "Set password",
    new_password: "New password (at least 10 characters):", add_account: "Add account",
    sold_out: "Sold out", alarm_history: "Alarms, last 7 days", cleared: "cleared",
    access: "Faces and access codes", enrol_face: "Enrol a face", member_id: "member id",
    consent: "the member agreed", access_code: "Access code", account: "account",
    shopper: "shopper", technician: "technician", make_code: "Make code", valid_until: "valid until",
    enroll_faces: "Enrol faces",
  },
  zh: {
    title: "售货柜后台", nav_fleet: "柜机", nav_sales: "销售", logout: "退出",
    language: "English", username: "用户名", password: "密码", log_in: "登录",
    login_refused: "用户名或密码错误。", network: "无法连接后台。",
    never: "从未", ago_s: "{0} 秒前", ago_min: "{0} 分钟前", ago_h: "{0} 小时前", ago_d: "{0} 天前",
    cabinets: "柜机", online: "在线", offline: "离线", offline_since: "自 {0} 离线",
    cabinet: "柜机", status: "状态", temperature: "温度", setpoint: "设定温度",
    alarms: "告警", lockout: "食品安全锁定", last_sale: "最近销售", lag: "队列延迟",
    version: "版本", last_seen: "最近联系", filter: "筛选", all: "全部",
    only_offline: "离线", only_alarms: "有告警", today: "今日", revenue: "销售额",
    units: "件数", sales_count: "笔数", none: "无", of_fleet: "{1} 台中 {0} 台在线",
    temperature_24h: "温度（最近 24 小时）", temperature_7d: "温度（最近 7 天）",
    h24: "24 小时", d7: "7 天", door_open: "开门", compressor_duty: "压缩机占空比",
    actions: "远程操作", commands: "指令", command: "指令", issued: "已下发",
    delivered: "已送达", done: "已完成", rejected: "被拒绝", failed: "失败", expired: "已过期",
    unsupported: "不支持", interrupted: "已中断", by: "操作人", at: "时间", detail: "详情",
    set_setpoint: "设定温度", restock_mode: "补货模式", clear_alarm: "清除告警",
    clear_lockout: "解除锁定（已检查食品）", end_session: "结束卡住的交易",
    request_diagnostics: "诊断", restart: "重启", send: "发送",
    confirm_lockout: "是否已有人检查过柜内食品？将以其名义解除锁定。",
    confirm_restart: "现在重启柜机软件吗？（交易进行中会被拒绝。）",
    recent_sessions: "最近销售", period: "时段", last_7: "最近 7 天", last_30: "最近 30 天",
    this_month: "本月", compare: "上一时段", by_day: "每日销售额",
    by_hour: "按小时", heat: "按星期和小时的销售额", top: "畅销商品",
    by_cabinet: "按柜机", transactions: "交易明细", lines: "商品", flags: "标记",
    shelves: "称重", total: "合计", product: "商品", export_csv: "导出 CSV",
    weekdays: "周一,周二,周三,周四,周五,周六,周日", change: "较上一时段 {0}",
    no_data: "暂无数据。", sent: "已发送：{0}", forbidden: "您的角色无权执行此操作。",
    nav_review: "审核", nav_stock: "库存", nothing_to_review: "没有待审核的记录。",
    recorded_lines: "记录的商品", removed: "未付款取走", value: "价值",
    action_lines: "实际取走以下商品", action_void: "作废（未取商品）",
    action_refund: "退款（已取走，退回款项）", action_accept: "按记录确认",
    add_line: "添加一行", note: "备注（核查情况）", resolve: "处理", price: "单价",
    route: "线路上的柜机", days_ahead: "距补货天数", print: "打印",
    choose_cabinets: "请选择线路上的柜机。", pick_total: "需装车（全部柜机）",
    shelf: "层", count: "柜内数量", par: "标准库存", per_day: "日均销量", bring: "需补",
    not_counted: "未盘点", count_on_site: "现场盘点", save_par: "保存标准库存",
    counted: "盘点时间",
    nav_alerts: "告警", rules: "规则", fired_alerts: "已触发的告警", new_rule: "新规则",
    minutes: "持续（分钟）", quiet: "免打扰时段", add_rule: "添加规则", delete: "删除",
    resolved: "已恢复", secret_once: "Webhook 签名密钥（仅显示这一次）：",
    alert_offline: "离线", alert_temperature: "温度超出范围", alert_lockout: "食品安全锁定",
    alert_forced_open: "柜门被强行打开", alert_unauthorised: "未经授权取走",
    alert_sold_out: "售罄", alert_no_sales: "无销售", "alert_deleted rule": "已删除的规则",
    delivery_sent: "已发送", delivery_pending: "等待中", delivery_failed: "失败",
    nav_planogram: "商品与价格", no_planogram: "柜机尚未上报商品配置。",
    applied_at: "已应用", reported_at: "上报于", products: "商品", shelves_stock: "货架",
    add_product: "添加商品", send_planogram: "发送到柜机", field_sku: "编码",
    field_name_zh: "名称（中）", field_name_bo: "名称（藏）", field_name_en: "名称（英）",
    field_price_fen: "价格（分）", field_unit_grams: "单重 g", field_tolerance_grams: "± g",
    field_perishable: "易腐",
    nav_people: "人员", accounts: "账户", audit: "操作日志", audit_filter: "人员或柜机",
    disabled: "已停用", enable: "启用", disable: "停用", set_password: "设置密码",
    new_password: "新密码（至少 10 个字符）：", add_account: "添加账户",
    sold_out: "售罄", alarm_history: "告警（最近 7 天）", cleared: "已清除",
    access: "人脸与通行码", enrol_face: "录入人脸", member_id: "会员编号",
    consent: "会员已同意", access_code: "通行码", account: "账户",
    shopper: "顾客", technician: "技术员", make_code: "生成", valid_until: "有效期至",
    enroll_faces: "录入人脸",
  },
};

const LANG = "office.lang";

export function lang() {
  const chosen = localStorage.getItem(LANG);
  if (chosen in STRINGS) return chosen;
  return (navigator.language || "").toLowerCase().startsWith("zh") ? "zh" : "en";
}

export function setLang(code) { localStorage.setItem(LANG, code); }

export function t(key, ...args) {
  const text = STRINGS[lang()][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\d)\}/g, (_, i) => String(args[Number(i)]));
}

/** Fill every [data-t] element of the page's frame. */
export function translateFrame() {
  document.documentElement.lang = lang() === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
}
